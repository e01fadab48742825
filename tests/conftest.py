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
# Never reach a real AWS account from the tests.
for _key, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[_key] = _value


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The embedded emulator (moto server + our extension) on a free loopback port, per session.

    Tests may adjust ``emulator.settings`` (answer keys, delays); they share one server.
    """
    from emulator.server import EmulatorServer
    from emulator.settings import EmulatorSettings

    settings = EmulatorSettings(
        work_dir=tmp_path_factory.mktemp("emulator"),
        labeling_delay_seconds=0.3,
        deployment_delay_seconds=0.3,
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
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": emulator.url, "region_name": "us-east-1"},
            }
        ),
    )
    return "aws_deeplens"
