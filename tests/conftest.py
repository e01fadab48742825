"""Shared fixtures: an isolated Airflow home and an AWS emulator served over HTTP."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="deeplens-airflow-home-")
os.environ.setdefault("AIRFLOW_HOME", _AIRFLOW_HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
# Job names hash the environment's id (else kept in an Airflow Variable): fixed for the tests.
os.environ.setdefault("DEEPLENS_ENVIRONMENT", "tests")
# Never reach a real AWS account from the tests.
for _key, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[_key] = _value


PIPELINE_ACCESS_KEY = "deeplens-pipeline"
"""The access key of the pipeline's connection in the tests: calls signed with it are the pipeline's."""


@pytest.fixture(scope="session", autouse=True)
def pipeline_calls() -> Iterator[Any]:
    """Every AWS API call the pipeline's connection makes during the session (the IAM policies' proof).

    The end-to-end tests add the calls their DAG runs made; tests/iam checks the policies against it.
    """
    from emulator.aws_calls import record_calls

    with record_calls(access_key=PIPELINE_ACCESS_KEY) as recorder:
        yield recorder


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The embedded emulator (moto server + our extension) on a free loopback port, per session.

    Tests may adjust ``emulator.settings`` (answer keys, delays); they share one server.
    """
    from emulator.server import EmulatorServer
    from emulator.settings import EmulatorSettings

    settings = EmulatorSettings(
        work_dir=tmp_path_factory.mktemp("emulator"),
        # Long enough that a status read right after a create sees InProgress on a loaded machine.
        labeling_delay_seconds=1.0,
        deployment_delay_seconds=1.0,
        # The legacy greengrass-v1 path stays testable; tests/emulator/test_greengrass.py checks that
        # by default (as on AWS since 7 October 2026) the V1 API refuses every call.
        greengrass_v1="available",
    )
    server = EmulatorServer(settings)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_endpoint(emulator: Any) -> str:
    """URL of the emulator (moto server mode, over HTTP)."""
    return emulator.url


@pytest.fixture
def aws_conn(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The pipeline's Airflow connection ``aws_deeplens``, pointed at the emulator; yields its id."""
    import json

    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEEPLENS",
        json.dumps(
            {
                "conn_type": "aws",
                "login": PIPELINE_ACCESS_KEY,
                "password": "testing",
                "extra": {"endpoint_url": emulator.url, "region_name": "us-east-1"},
            }
        ),
    )
    return "aws_deeplens"


def stage_sample_split(endpoint_url: str, bucket: str, root: Any, n_train: int) -> dict[str, Any]:
    """Upload a generated sample dataset to ``bucket`` with train/validation manifests of its answers.

    Returns the split the training stage takes (URIs, counts) and the dataset's classes.
    """
    import json

    import boto3

    from deeplens_pipeline.groundtruth import LabelledImage

    key = json.loads((root / "answer_key.json").read_text())
    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    lines = []
    for name, entry in sorted(key["images"].items()):
        s3.upload_file(str(root / "images" / name), bucket, f"input/{name}")
        boxes = [
            {
                "class_id": key["classes"].index(o["label"]),
                **{k: o[k] for k in ("left", "top", "width", "height")},
            }
            for o in entry["objects"]
        ]
        image = LabelledImage(f"s3://{bucket}/input/{name}", entry["width"], entry["height"], 3, boxes)
        lines.append(image.to_line("bounding-box", key["classes"]))
    s3.put_object(Bucket=bucket, Key="m/train.manifest", Body="\n".join(lines[:n_train]).encode())
    s3.put_object(Bucket=bucket, Key="m/validation.manifest", Body="\n".join(lines[n_train:]).encode())
    return {
        "train_uri": f"s3://{bucket}/m/train.manifest",
        "validation_uri": f"s3://{bucket}/m/validation.manifest",
        "train_count": n_train,
        "validation_count": len(lines) - n_train,
        "classes": key["classes"],
    }


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Label Studio server from ``.venv-ls`` (``make ls-env``) on a free 127.0.0.1 port, per session.

    Skips when that environment is missing, except in CI (``CI=true``), where it fails instead: ``make
    test`` builds it, so a missing one there is a broken build, not an optional tool.
    """
    from emulator.label_studio_server import label_studio_available, start_label_studio

    if not label_studio_available():
        reason = "Label Studio's environment .venv-ls is missing: run `make ls-env`"
        if os.environ.get("CI", "").strip().lower() in ("true", "1"):
            pytest.fail(f"{reason} (CI=true: make test builds it, so it must be there)")
        pytest.skip(reason)
    server = start_label_studio(tmp_path_factory.mktemp("label-studio"))
    yield server
    server.stop()
