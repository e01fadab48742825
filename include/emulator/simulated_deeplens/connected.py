"""A simulated DeepLens connected to everything its function talks to: broker, Greengrass IPC, camera.

    with connected_deeplens(root, emulator_url=url, region=region, thing_name=thing,
                            camera_frames=holdout / "images") as deeplens:
        deeplens.broker_host, deeplens.broker_port      # mosquitto: subscribe to deeplens.infer_topic
        deeplens.ssh                                    # SshSettings for the ``ssh`` deployer
        deeplens.mjpeg_fifo                             # host path of the device's /tmp/results.mjpeg

What starts, in order (and stops in reverse):

1. Debian's mosquitto (:class:`emulator.mqtt_broker.MqttBroker`): AWS IoT Core's message broker;
2. the Greengrass V1 core's IPC (:class:`emulator.greengrass_ipc.GreengrassV1CoreIpc`) with the
   group's one subscription, ``function_arn`` to ``cloud`` on ``$aws/things/<thing>/infer``: what
   the function runs as when ``systemctl restart greengrassd`` (the ``ssh`` method) starts it;
3. the Greengrass V2 nucleus's IPC (:class:`emulator.greengrass_ipc.NucleusIpcServer`) on the
   device's ``/greengrass/v2/ipc.socket``; each deployed component is registered with its
   configuration's ``accessControl`` (as the nucleus reads it) and gets the socket's device path;
4. the device (:class:`SimulatedDeepLens`): the ``python3.7`` of ``deeplens_device.launcher``
   (ML tools environment + ``awscam``/``mo`` stand-ins), its SSH server with a fresh client key,
   and, given ``emulator_url``, its Greengrass V2 core registered with the deployment agent.

The camera's frames (a folder of images or a video file) are copied into the device root
(``/opt/awscam/simulated-camera``): the host's ``/tmp`` is not the device's. Every function gets
``DEEPLENS_CAMERA_SOURCE`` (and ``DEEPLENS_CAMERA_FPS`` when given); only the functions of the
``greengrassd`` unit get the V1 Lambda runtime's variables (a V2 component must publish through the
nucleus, and ``deeplens_iot`` prefers the Lambda runtime when both are set).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from deeplens_device.launcher import write_device_python
from emulator.greengrass_ipc import GreengrassV1CoreIpc, NucleusIpcServer, Subscription
from emulator.greengrass_ipc.nucleus import LEGACY_SOCKET_VARIABLE, SOCKET_VARIABLE
from emulator.mqtt_broker import MqttBroker
from emulator.simulated_deeplens.device import SimulatedDeepLens
from emulator.simulated_deeplens.device_root import DEVICE_USER
from emulator.simulated_deeplens.greengrass_core import DEFAULT_ROLE_ALIAS

DEVICE_IPC_SOCKET = "/greengrass/v2/ipc.socket"
"""The nucleus's IPC socket, as the device's processes see it."""
DEVICE_CAMERA_DIR = "/opt/awscam/simulated-camera"
"""Where the camera's frames are copied on the device."""
DEVICE_MJPEG_FIFO = "/tmp/results.mjpeg"
"""The function's annotated-frame stream (``deeplens_logic.DEFAULTS['results_fifo']``)."""
CAMERA_SOURCE_ENV = "DEEPLENS_CAMERA_SOURCE"
CAMERA_FPS_ENV = "DEEPLENS_CAMERA_FPS"
DEFAULT_ACCOUNT = "123456789012"


def infer_topic(thing_name: str) -> str:
    """The thing's DeepLens topic (``deeplens_pipeline.deploy.inference_settings.infer_topic``)."""
    return f"$aws/things/{thing_name}/infer"


def default_function_arn(region: str, account_id: str | None) -> str:
    """A version ARN for the inference function the ``greengrassd`` unit runs."""
    return f"arn:aws:lambda:{region}:{account_id or DEFAULT_ACCOUNT}:function:deeplens-inference:1"


@dataclass(frozen=True)
class SshSettings:
    """What the ``ssh`` deployer needs (the fields of ``deeplens_pipeline.deploy.ssh.SshTarget``)."""

    host: str
    port: int
    user: str
    key_file: str
    known_hosts_file: str

    def as_target_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``SshTarget(...)``, host keys checked."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "key_file": self.key_file,
            "known_hosts_file": self.known_hosts_file,
            "strict_host_key_checking": True,
        }


@dataclass(frozen=True)
class ConnectedDeepLens:
    """A running, connected simulated DeepLens (yielded by :func:`connected_deeplens`)."""

    device: SimulatedDeepLens
    broker: MqttBroker
    core_v1: GreengrassV1CoreIpc
    nucleus: NucleusIpcServer
    thing_name: str
    function_arn: str
    ssh: SshSettings

    @property
    def broker_host(self) -> str:
        """The MQTT broker's host (127.0.0.1)."""
        return self.broker.host

    @property
    def broker_port(self) -> int:
        """The MQTT broker's port."""
        return self.broker.port

    @property
    def infer_topic(self) -> str:
        """``$aws/things/<thing>/infer``."""
        return infer_topic(self.thing_name)

    @property
    def mjpeg_fifo(self) -> Path:
        """Host path of the function's MJPEG FIFO (the device's ``/tmp/results.mjpeg``)."""
        return self.device.host_path(DEVICE_MJPEG_FIFO)

    def log_text(self) -> str:
        """The device's function and component logs, for failure messages."""
        texts = []
        for folder in ("/greengrass/ggc/var/log/user", "/greengrass/v2/logs"):
            for path in sorted(self.device.host_path(folder).glob("*.log")):
                texts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(texts)


def install_camera(device: SimulatedDeepLens, frames: Path) -> str:
    """Copy a folder of frames or a video file into the device root; the device path of the copy."""
    frames = Path(frames)
    target = device.host_path(DEVICE_CAMERA_DIR)
    shutil.rmtree(target, ignore_errors=True)
    if frames.is_dir():
        shutil.copytree(frames, target)
        return DEVICE_CAMERA_DIR
    if frames.is_file():
        target.mkdir(parents=True)
        shutil.copy2(frames, target / frames.name)
        return f"{DEVICE_CAMERA_DIR}/{frames.name}"
    raise FileNotFoundError(f"camera frames {frames}: no such folder or video file")


def write_client_key(folder: Path) -> tuple[Path, str]:
    """A fresh ed25519 key for the deployer: (private key file, 0600; OpenSSH public key text)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    private = folder / "id_ed25519"
    private.write_bytes(key.export_private_key("openssh"))
    private.chmod(0o600)
    return private, key.export_public_key("openssh").decode()


@contextlib.contextmanager
def connected_deeplens(
    root: Path,
    *,
    camera_frames: Path,
    thing_name: str = "deeplens_simulated",
    region: str = "us-east-1",
    emulator_url: str | None = None,
    account_id: str | None = None,
    role_alias: str = DEFAULT_ROLE_ALIAS,
    function_arn: str | None = None,
    camera_fps: float | None = None,
    extra_environment: Mapping[str, str] | None = None,
) -> Iterator[ConnectedDeepLens]:
    """Start the broker, both Greengrass IPC servers and the device; stop them all on exit.

    ``root``: the device root (a host folder; its parent also gets ``<root>.ssh/`` with the
    client key and ``<root>.known_hosts``). ``emulator_url``: start the Greengrass V2 core; the
    thing must exist and be a Greengrass V2 core device there (``emulator.seed.register_greengrass_v2_core``).
    ``function_arn``: what the ``greengrassd`` unit's function runs as (the V1 subscription's source).
    ``extra_environment``: more variables for every function (e.g. ``DEEPLENS_THRESHOLD``).
    Raises ``emulator.mqtt_broker.BrokerUnavailable`` without mosquitto, RuntimeError without
    user + mount namespaces.
    """
    root = Path(root)
    function_arn = function_arn or default_function_arn(region, account_id)
    key_file, public_key = write_client_key(Path(f"{root}.ssh"))
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(MqttBroker())
        core_v1 = stack.enter_context(
            GreengrassV1CoreIpc(
                broker.host,
                broker.port,
                [Subscription(source=function_arn, subject=infer_topic(thing_name))],
                thing_name=thing_name,
                region=region,
            )
        )
        socket_host_path = root / DEVICE_IPC_SOCKET.lstrip("/")
        nucleus = stack.enter_context(
            NucleusIpcServer(
                broker.host, broker.port, socket_path=socket_host_path, thing_name=thing_name, region=region
            )
        )

        def component_environment(name: str, configuration: Mapping[str, Any]) -> dict[str, str]:
            nucleus.register_component(name, configuration.get("accessControl"))
            env = nucleus.component_environment(name)
            env[SOCKET_VARIABLE] = env[LEGACY_SOCKET_VARIABLE] = DEVICE_IPC_SOCKET
            return env

        camera: dict[str, str] = {}

        def environment() -> dict[str, str]:
            return {**camera, **(extra_environment or {})}

        device = SimulatedDeepLens(
            root,
            thing_name=thing_name,
            region=region,
            client_public_key=public_key,
            environment=environment,
            component_environment=component_environment,
            python_launcher=write_device_python,
            emulator_url=emulator_url,
            account_id=account_id,
            role_alias=role_alias,
        )
        device.root.create()
        camera[CAMERA_SOURCE_ENV] = install_camera(device, camera_frames)
        if camera_fps:
            camera[CAMERA_FPS_ENV] = str(camera_fps)
        stack.enter_context(device)
        if device.greengrassd is None:
            raise RuntimeError("the simulated DeepLens started without its greengrassd unit")
        device.greengrassd.env.update(core_v1.function_environment(function_arn))
        yield ConnectedDeepLens(
            device=device,
            broker=broker,
            core_v1=core_v1,
            nucleus=nucleus,
            thing_name=thing_name,
            function_arn=function_arn,
            ssh=SshSettings(
                host="127.0.0.1",
                port=device.ssh_port,
                user=DEVICE_USER,
                key_file=str(key_file),
                known_hosts_file=str(device.known_hosts_path),
            ),
        )
