"""The ``ssh`` deploy method against the simulated DeepLens's real SSH server, host keys checked.

The project's ``SshDeployer`` runs the system ``ssh``/``scp`` (OpenSSH; ``scp`` speaks SFTP) with
``StrictHostKeyChecking=yes`` against the device's ``known_hosts`` line.
"""

from __future__ import annotations

import io
import json
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import Any

import asyncssh
import boto3
import pytest

from deeplens_pipeline.deploy import ssh
from deeplens_pipeline.deploy.base import SUCCESS, DeploymentRequest
from deeplens_pipeline.deploy.inference_settings import InferenceSettings
from emulator.simulated_deeplens import SimulatedDeepLens
from tests.emulator.helpers import tar_gz
from tests.emulator.simulated_deeplens.conftest import HEARTBEAT, STAND_IN_FUNCTION, read_heartbeat, wait_for

REGION = "eu-north-1"
MODEL = "deploy_model_algo_1"

pytestmark = pytest.mark.skipif(
    shutil.which("ssh") is None or shutil.which("scp") is None,
    reason="the OpenSSH client (ssh, scp) is missing",
)


def _key_pair(folder: Path, name: str) -> tuple[Path, str]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    private = folder / name
    private.write_bytes(key.export_private_key("openssh"))
    private.chmod(0o600)
    return private, key.export_public_key("openssh").decode()


@pytest.fixture(scope="module")
def model_uri(emulator: Any) -> str:
    s3 = boto3.client("s3", endpoint_url=emulator.url, region_name=REGION)
    bucket = f"deeplens-ssh-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    archive = tar_gz({f"{MODEL}-symbol.json": b'{"nodes": []}', f"{MODEL}-0000.params": b"\0" * 64})
    s3.put_object(Bucket=bucket, Key="repacked/model.tar.gz", Body=archive)
    return f"s3://{bucket}/repacked/model.tar.gz"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("keys")
    client, client_public = _key_pair(folder, "deeplens")
    stranger, _ = _key_pair(folder, "stranger")
    return {"client": client, "client_public": client_public, "stranger": stranger, "folder": folder}


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Any]):
    root = tmp_path_factory.mktemp("ssh-device") / "root"
    with SimulatedDeepLens(
        root, thing_name="deeplens_ssh", client_public_key=keys["client_public"]
    ) as device:
        yield device


def _function_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("deeplens_inference.py", STAND_IN_FUNCTION)
        archive.writestr("deeplens_logic.py", "# part of the function\n")
    return buffer.getvalue()


def _request(model_uri: str) -> DeploymentRequest:
    return DeploymentRequest(
        thing_name="deeplens_ssh",
        model_s3_uri=model_uri,
        lambda_version_arn="arn:aws:lambda:eu-north-1:123456789012:function:deeplens-inference:1",
        settings=InferenceSettings(model_name=MODEL, labels=("blue_box", "yellow_box"), image_shape=512),
        run_token=uuid.uuid4().hex[:12],
        function_package=_function_zip(),
    )


def _deployer(emulator: Any, target: ssh.SshTarget) -> ssh.SshDeployer:
    return ssh.SshDeployer(target, boto3.client("s3", endpoint_url=emulator.url, region_name=REGION))


def test_ssh_deployer_installs_the_model_and_function_and_restarts_it(
    emulator: Any, device: SimulatedDeepLens, keys: dict[str, Any], model_uri: str
) -> None:
    target = ssh.SshTarget(
        host="127.0.0.1",
        port=device.ssh_port,
        key_file=str(keys["client"]),
        known_hosts_file=str(device.known_hosts_path),
        strict_host_key_checking=True,
    )
    deployer = _deployer(emulator, target)
    handle = deployer.deploy(_request(model_uri))
    artifacts = device.host_path("/opt/awscam/artifacts")
    assert sorted(p.name for p in artifacts.iterdir()) == [f"{MODEL}-0000.params", f"{MODEL}-symbol.json"]
    function = device.host_path(ssh.DEFAULT_FUNCTION_DIR)
    assert sorted(p.name for p in function.iterdir()) == [
        "deeplens_config.json",
        "deeplens_inference.py",
        "deeplens_logic.py",
    ]
    assert not list(device.host_path("/tmp").glob("deeplens-deploy-*")), "the staging folder is removed"
    seen = wait_for(lambda: read_heartbeat(device.host_path(HEARTBEAT)), what="the restarted function")
    assert seen["cwd"] == ssh.DEFAULT_FUNCTION_DIR
    assert seen["artifacts"] == [f"{MODEL}-0000.params", f"{MODEL}-symbol.json"]
    assert MODEL in json.dumps(seen["config"]), "the function's settings file came along"
    assert seen["thing"] == "deeplens_ssh"
    assert deployer.status(handle).state == SUCCESS


def test_a_wrong_host_key_is_refused_by_the_client(
    emulator: Any, device: SimulatedDeepLens, keys: dict[str, Any], model_uri: str
) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().split()
    known_hosts = keys["folder"] / "wrong_known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{device.ssh_port} {other[0]} {other[1]}\n")
    target = ssh.SshTarget(
        host="127.0.0.1",
        port=device.ssh_port,
        key_file=str(keys["client"]),
        known_hosts_file=str(known_hosts),
    )
    with pytest.raises(RuntimeError, match="HOST IDENTIFICATION HAS CHANGED|Host key verification failed"):
        _deployer(emulator, target).deploy(_request(model_uri))


def test_an_unknown_client_key_is_refused_by_the_server(
    emulator: Any, device: SimulatedDeepLens, keys: dict[str, Any], model_uri: str
) -> None:
    target = ssh.SshTarget(
        host="127.0.0.1",
        port=device.ssh_port,
        key_file=str(keys["stranger"]),
        known_hosts_file=str(device.known_hosts_path),
    )
    with pytest.raises(RuntimeError, match=r"Permission denied \(publickey\)"):
        _deployer(emulator, target).deploy(_request(model_uri))
    wrong_user = ssh.SshTarget(
        host="127.0.0.1",
        port=device.ssh_port,
        user="root",
        key_file=str(keys["client"]),
        known_hosts_file=str(device.known_hosts_path),
    )
    with pytest.raises(RuntimeError, match=r"Permission denied \(publickey\)"):
        _deployer(emulator, wrong_user).deploy(_request(model_uri))
