"""A model the pipeline trained, deployed by the project's own deployers, detects on the simulated DeepLens.

The model: the pipeline's trainer (``ml_tools.train``, tiny network, 120 epochs with a fixed seed;
see ``emulator.sample_model``, trained once and cached under ``build/``) repacked by ``model_fix``
as RepackModelOperator does; the function: the zip ``lambda_package`` builds. Both go to the
emulator's S3, then to a simulated DeepLens (``emulator.simulated_deeplens.connected``) through
each live method:

- ``greengrass-v2``: component version, DEPLOYABLE, deployment; the device's core downloads the
  artifacts, runs Install (offline pip) and Run; the function publishes through the nucleus IPC;
- ``ssh``: scp with host keys checked, unpack, ``systemctl restart greengrassd``; the function
  publishes through the Greengrass V1 core IPC.

The camera serves fresh sample photos (not trained on) in name order, one per call; each detections
message on ``$aws/things/<thing>/infer`` (mosquitto) is compared with that photo's answer key: the
right class name and IoU >= 0.5, for most objects.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import boto3
import pytest

from deeplens_device.launcher import ML_PYTHON
from deeplens_pipeline.deploy import ssh
from deeplens_pipeline.deploy.base import FINAL_STATES, SUCCESS, DeploymentRequest
from deeplens_pipeline.deploy.greengrass_v2 import GreengrassV2Deployer
from deeplens_pipeline.deploy.inference_settings import InferenceSettings
from deeplens_pipeline.lambda_package import build_deployment_zip
from emulator.mqtt_broker import BrokerUnavailable, mosquitto_binary
from emulator.sample_dataset import generate_sample_dataset
from emulator.sample_model import CLASSES, IMAGE_SHAPE, trained_sample_model
from emulator.seed import register_greengrass_v2_core
from emulator.simulated_deeplens.connected import ConnectedDeepLens, connected_deeplens
from model_fix import FixOptions, repack_model_archive

ROOT = Path(__file__).resolve().parents[3]
REGION = "us-west-2"
THRESHOLD = 0.3
HOLDOUT_IMAGES = 10
MESSAGE_TIMEOUT = 120.0


def _missing_system_part() -> str | None:
    from emulator.simulated_deeplens import namespace_unavailable

    try:
        mosquitto_binary()
    except BrokerUnavailable as exc:
        return str(exc)
    reason = namespace_unavailable()
    if reason:
        return f"the simulated DeepLens needs user + mount namespaces (unshare -rm): {reason}"
    if not ML_PYTHON.is_file():
        return f"{ML_PYTHON} is missing: build the ML tools environment (make ml-env)"
    return None


pytestmark = pytest.mark.skipif(_missing_system_part() is not None, reason=str(_missing_system_part()))


class Uploaded(NamedTuple):
    """The model and function on the emulator's S3, and what the device must be told."""

    model_uri: str
    function_uri: str
    function_zip: bytes
    model_name: str


@pytest.fixture(scope="module")
def holdout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fresh sample photos (another seed than training's) with their answer key: the camera."""
    return generate_sample_dataset(tmp_path_factory.mktemp("holdout"), n_images=HOLDOUT_IMAGES, seed=999)


@pytest.fixture(scope="module")
def uploaded(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Uploaded:
    """The sample model (trained once by the pipeline's trainer, cached), repacked with model_fix
    as the pipeline does, then model and function uploaded."""
    root = tmp_path_factory.mktemp("trained")
    model = trained_sample_model(ML_PYTHON)
    assert model.classes == CLASSES
    repacked = repack_model_archive(
        model.archive,
        root / "deploy-model.tar.gz",
        "model",
        FixOptions(num_classes=len(CLASSES), data_shape=model.image_shape),
    )
    s3 = boto3.client("s3", endpoint_url=emulator.url, region_name=REGION)
    bucket = f"deeplens-detects-{uuid.uuid4().hex[:8]}"  # the device role reads deeplens-*
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.upload_file(str(repacked.archive_path), bucket, "model/deploy-model.tar.gz")
    function_zip = build_deployment_zip()
    s3.put_object(Bucket=bucket, Key="function/deeplens-inference.zip", Body=function_zip)
    return Uploaded(
        f"s3://{bucket}/model/deploy-model.tar.gz",
        f"s3://{bucket}/function/deeplens-inference.zip",
        function_zip,
        repacked.deploy_model_name,
    )


@pytest.fixture
def deeplens(
    emulator: Any, holdout: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConnectedDeepLens]:
    """A fresh simulated DeepLens, registered as a Greengrass V2 core device (deployment agent on)."""
    thing = f"deeplens_{uuid.uuid4().hex[:12]}"
    boto3.client("iot", endpoint_url=emulator.url, region_name=REGION).create_thing(thingName=thing)
    suffix = uuid.uuid4().hex[:8]
    _, alias = register_greengrass_v2_core(
        emulator.url, REGION, thing, role_name=f"deeplens-tes-{suffix}", role_alias=f"deeplens-alias-{suffix}"
    )
    with connected_deeplens(
        tmp_path_factory.mktemp("deeplens") / "root",
        camera_frames=holdout / "images",
        thing_name=thing,
        region=REGION,
        emulator_url=emulator.url,
        role_alias=alias,
    ) as connected:
        yield connected


class TopicRecorder:
    """Subscribes to one topic on the broker (paho-mqtt) and keeps each message's JSON payload."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"proof-{uuid.uuid4().hex[:8]}"
        )
        self._client.on_connect = lambda client, *_: client.subscribe(topic, qos=0)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(host, port)
        self._client.loop_start()
        assert self._subscribed.wait(10), f"could not subscribe to {topic}"

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append(json.loads(message.payload))

    def run_after_last_start(self) -> list[dict[str, Any]]:
        """Detection messages after the function's last 'model loaded' status (one per frame)."""
        with self._lock:
            messages = list(self.messages)
        starts = [i for i, m in enumerate(messages) if str(m.get("status", "")).startswith("model loaded")]
        return [m for m in messages[starts[-1] + 1 :] if "status" not in m] if starts else []

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _score(holdout: Path, detections: list[dict[str, Any]]) -> tuple[int, int, list[str]]:
    """(objects matched with the right label and IoU >= 0.5, objects, labels of blue-box frames)."""
    key = json.loads((holdout / "answer_key.json").read_text())
    frames = sorted((name, entry["objects"]) for name, entry in key["images"].items())
    matched = total = 0
    blue_frames = []
    for (_, objects), message in zip(frames, detections, strict=False):
        found = message.get("detections", [])
        for obj in objects:
            total += 1
            truth = (obj["left"], obj["top"], obj["left"] + obj["width"], obj["top"] + obj["height"])
            same = [(d["xmin"], d["ymin"], d["xmax"], d["ymax"]) for d in found if d["label"] == obj["label"]]
            matched += any(_iou(truth, box) >= 0.5 for box in same)
        if any(o["label"] == "blue_box" for o in objects):
            blue_frames.append(",".join(sorted({d["label"] for d in found})))
    return matched, total, blue_frames


def _collect(recorder: TopicRecorder, deeplens: ConnectedDeepLens, frames: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + MESSAGE_TIMEOUT
    while time.monotonic() < deadline:
        run = recorder.run_after_last_start()
        errors = [m for m in run if "error" in m] or [m for m in recorder.messages if "error" in m]
        assert not errors, f"{errors}\n{deeplens.log_text()}"
        if len(run) >= frames:
            return run[:frames]
        time.sleep(0.2)
    raise AssertionError(f"no full pass over the holdout frames: {recorder.messages}\n{deeplens.log_text()}")


def _check_detections(holdout: Path, run: list[dict[str, Any]], method: str) -> None:
    assert all(set(m) <= {*CLASSES, "detections"} for m in run), run  # {} when nothing is found
    labels = {d["label"] for m in run for d in m.get("detections", [])}
    assert labels <= set(CLASSES), labels
    matched, total, blue_frames = _score(holdout, run)
    print(f"{method}: {matched} of {total} objects matched with IoU >= 0.5 and the right class name")
    assert total >= HOLDOUT_IMAGES
    assert matched > total / 2, f"{method}: only {matched} of {total} objects matched: {run}"
    assert sum("blue_box" in found for found in blue_frames) > len(blue_frames) / 2, blue_frames


def _request(deeplens: ConnectedDeepLens, uploaded: Uploaded, **kwargs: Any) -> DeploymentRequest:
    return DeploymentRequest(
        thing_name=deeplens.thing_name,
        model_s3_uri=uploaded.model_uri,
        lambda_version_arn=deeplens.function_arn,
        settings=InferenceSettings(
            model_name=uploaded.model_name, labels=CLASSES, image_shape=IMAGE_SHAPE, threshold=THRESHOLD
        ),
        run_token=uuid.uuid4().hex[:12],
        **kwargs,
    )


def test_greengrass_v2_deployment_detects(
    emulator: Any, uploaded: Uploaded, deeplens: ConnectedDeepLens, holdout: Path
) -> None:
    clients = {
        n: boto3.client(n, endpoint_url=emulator.url, region_name=REGION) for n in ("greengrassv2", "iot")
    }
    deployer = GreengrassV2Deployer(clients["greengrassv2"], clients["iot"], component_poll_interval=0.5)
    recorder = TopicRecorder(deeplens.broker_host, deeplens.broker_port, deeplens.infer_topic)
    try:
        handle = deployer.deploy(_request(deeplens, uploaded, function_s3_uri=uploaded.function_uri))
        deadline = time.monotonic() + 120
        status = deployer.status(handle)
        while status.state not in FINAL_STATES and time.monotonic() < deadline:
            time.sleep(0.5)
            status = deployer.status(handle)
        assert status.state == SUCCESS, f"{status.describe()}\n{deeplens.log_text()}"
        run = _collect(recorder, deeplens, HOLDOUT_IMAGES)
    finally:
        recorder.close()
    assert deeplens.nucleus.published, "the messages went through the Greengrass V2 nucleus IPC"
    assert not deeplens.core_v1.routed
    _check_detections(holdout, run, "greengrass-v2")


@pytest.mark.skipif(
    shutil.which("ssh") is None or shutil.which("scp") is None,
    reason="the OpenSSH client (ssh, scp) is missing",
)
def test_ssh_deployment_detects(
    emulator: Any, uploaded: Uploaded, deeplens: ConnectedDeepLens, holdout: Path
) -> None:
    s3 = boto3.client("s3", endpoint_url=emulator.url, region_name=REGION)
    deployer = ssh.SshDeployer(ssh.SshTarget(**deeplens.ssh.as_target_kwargs()), s3)
    recorder = TopicRecorder(deeplens.broker_host, deeplens.broker_port, deeplens.infer_topic)
    try:
        handle = deployer.deploy(_request(deeplens, uploaded, function_package=uploaded.function_zip))
        assert deployer.status(handle).state == SUCCESS
        run = _collect(recorder, deeplens, HOLDOUT_IMAGES)
    finally:
        recorder.close()
    assert deeplens.core_v1.routed and all(m.delivered for m in deeplens.core_v1.routed)
    assert not deeplens.nucleus.published, "the messages went through the Greengrass V1 core IPC"
    _check_detections(holdout, run, "ssh")
