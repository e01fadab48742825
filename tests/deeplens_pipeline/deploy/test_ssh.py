"""SSH deployment: the exact commands, dry run, and a run with a recording command runner.

No device answers SSH here, so ``ssh``/``scp`` are not executed: a runner records the argv lists
(the model download goes to the moto server for real).
"""

from __future__ import annotations

import io
import json
import subprocess
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from deeplens_pipeline import lambda_package
from deeplens_pipeline.deploy import ssh
from deeplens_pipeline.deploy.base import DeploymentHandle

TARGET = ssh.SshTarget(
    host="192.168.1.20", user="aws_cam", key_file="/keys/deeplens", known_hosts_file="/keys/kh"
)
OPTIONS = [
    "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "StrictHostKeyChecking=yes",
    "-o", "UserKnownHostsFile=/keys/kh", "-i", "/keys/deeplens", "-o", "IdentitiesOnly=yes",
]  # fmt: skip


class Runner:
    """Records commands; fails the ones whose text contains ``fail_on``."""

    def __init__(self, fail_on: str | None = None, returncode: int = 0) -> None:
        self.commands: list[list[str]] = []
        self.fail_on = fail_on
        self.returncode = returncode
        self.copied: dict[str, list[str]] = {}

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess:
        argv = list(argv)
        self.commands.append(argv)
        if argv[0] == "scp":  # what would be copied, while the files still exist
            for source in argv[argv.index("-q") + 1 : -1]:
                path = Path(source)
                self.copied[path.name] = (
                    sorted(p.name for p in path.iterdir()) if path.is_dir() else [path.name]
                )
        failed = self.fail_on is not None and self.fail_on in " ".join(argv)
        return subprocess.CompletedProcess(argv, 1 if failed else self.returncode, "", "Permission denied")


def test_ssh_and_scp_commands() -> None:
    assert TARGET.ssh("uptime") == ["ssh", "-p", "22", *OPTIONS, "aws_cam@192.168.1.20", "--", "uptime"]
    assert TARGET.scp(["/w/model.tar.gz", "/w/function"], "/tmp/stage") == [
        "scp", "-P", "22", *OPTIONS, "-r", "-q",
        "/w/model.tar.gz", "/w/function", "aws_cam@192.168.1.20:/tmp/stage/",
    ]  # fmt: skip
    relaxed = ssh.SshTarget(host="deeplens.local", strict_host_key_checking=False, port=2222)
    assert relaxed.ssh("true")[:9] == [
        "ssh", "-p", "2222", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15",
        "-o", "StrictHostKeyChecking=accept-new",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"host": "-oProxyCommand=x"}, "not a host"),
        ({"host": "a b"}, "not a host"),
        ({"user": "-l"}, "not a user"),
        ({"port": 0}, "1..65535"),
        ({"key_file": "-i"}, "not a path"),
    ],
)
def test_target_refuses_option_injection(changes: dict, message: str) -> None:
    values = {"host": "deeplens.local", **changes}
    with pytest.raises(ValueError, match=message):
        ssh.SshTarget(**values)


def test_scp_refuses_a_path_needing_quotes() -> None:
    with pytest.raises(ValueError, match="remote folder"):
        TARGET.scp(["/w/x"], "/tmp/a b")


def test_plan_quotes_remote_paths_and_uses_sudo() -> None:
    layout = ssh.RemoteLayout(function_dir="/opt/my functions/x")
    plan = ssh.deployment_plan(
        TARGET,
        layout,
        staging_dir="/tmp/deeplens-deploy-abc",
        local_model_archive="/w/model.tar.gz",
        local_function_dir="/w/function",
    )
    remote = [step.argv[-1] for step in plan if step.argv[0] == "ssh"]
    assert remote == [
        "mkdir -p /tmp/deeplens-deploy-abc",
        "sudo -n mkdir -p /opt/awscam/artifacts && "
        "sudo -n tar -xzf /tmp/deeplens-deploy-abc/model.tar.gz -C /opt/awscam/artifacts",
        "sudo -n mkdir -p '/opt/my functions/x' && "
        "sudo -n cp -R /tmp/deeplens-deploy-abc/function/. '/opt/my functions/x/'",
        "sudo -n systemctl restart greengrassd",
        "rm -rf /tmp/deeplens-deploy-abc",
    ]
    assert [step.description for step in plan][1] == "copy the model archive and the function"
    no_sudo = ssh.RemoteLayout(use_sudo=False)
    zip_plan = ssh.deployment_plan(
        TARGET, no_sudo, staging_dir="/tmp/s", local_model_archive="/w/model.zip", local_function_dir="/w/f"
    )
    assert (
        zip_plan[2].argv[-1]
        == "mkdir -p /opt/awscam/artifacts && unzip -o /tmp/s/model.zip -d /opt/awscam/artifacts"
    )


def test_layout_refuses_root_and_relative_folders() -> None:
    with pytest.raises(ValueError, match="absolute folder other than /"):
        ssh.RemoteLayout(function_dir="/")
    with pytest.raises(ValueError, match="absolute folder"):
        ssh.RemoteLayout(artifacts_dir="opt/awscam")


@pytest.fixture
def model_in_s3(aws) -> str:
    bucket = f"deeplens-ssh-{uuid.uuid4().hex[:8]}"
    aws["s3"].create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    aws["s3"].put_object(Bucket=bucket, Key="models/model.tar.gz", Body=b"\x1f\x8b fake tarball")
    return f"s3://{bucket}/models/model.tar.gz"


def test_deploy_runs_the_plan_with_the_function_and_its_config(aws, model_in_s3, new_request) -> None:
    package = lambda_package.build_deployment_zip()
    request = new_request("deeplens_abc", model_s3_uri=model_in_s3, function_package=package)
    runner = Runner()
    deployer = ssh.SshDeployer(target=TARGET, s3_client=aws["s3"], runner=runner)

    handle = deployer.deploy(request)

    assert [argv[0] for argv in runner.commands] == ["ssh", "scp", "ssh", "ssh", "ssh", "ssh"]
    assert runner.copied["model.tar.gz"] == ["model.tar.gz"]
    assert "deeplens_inference.py" in runner.copied["function"]
    assert "deeplens_config.json" in runner.copied["function"]
    assert handle.deployment_id == "ssh-0123456789"
    assert handle.details["model_name"] == "deploy_model_algo_1"
    runner.commands.clear()
    assert deployer.status(handle).state == "Success"
    (check,) = runner.commands
    assert check[-1] == (
        "test -f /opt/deeplens-pipeline/function/deeplens_inference.py && "
        "test -f /opt/awscam/artifacts/deploy_model_algo_1-symbol.json"
    )


def test_failed_step_stops_the_deployment_with_the_device_message(aws, model_in_s3, new_request) -> None:
    request = new_request(
        "deeplens_abc", model_s3_uri=model_in_s3, function_package=lambda_package.build_deployment_zip()
    )
    runner = Runner(fail_on="tar -xzf")
    deployer = ssh.SshDeployer(target=TARGET, s3_client=aws["s3"], runner=runner)
    with pytest.raises(
        RuntimeError,
        match="'unpack the model into /opt/awscam/artifacts' failed with exit code 1: Permission denied",
    ):
        deployer.deploy(request)
    assert len(runner.commands) == 3  # nothing ran after the failure


def test_missing_files_on_the_device_is_a_failure() -> None:
    deployer = ssh.SshDeployer(target=TARGET, s3_client=None, runner=Runner(returncode=1))
    handle = DeploymentHandle("ssh", "ssh-x", "deeplens_abc", None, {"model_name": "deploy_m"})
    status = deployer.status(handle)
    assert status.state == "Failure"
    assert "deploy_m-symbol.json is missing on 192.168.1.20" in status.error_message


def test_dry_run_runs_and_downloads_nothing(new_request) -> None:
    runner = Runner()
    request = new_request("deeplens_abc", function_package=b"unused")
    deployer = ssh.SshDeployer(target=TARGET, s3_client=None, runner=runner, dry_run=True)
    handle = deployer.deploy(request)
    assert runner.commands == []
    assert handle.details["dry_run"] is True
    assert handle.details["commands"][0] == (
        "ssh -p 22 "
        + " ".join(OPTIONS)
        + " aws_cam@192.168.1.20 -- 'mkdir -p /tmp/deeplens-deploy-0123456789'"
    )
    with pytest.raises(ValueError, match="dry run deploys nothing"):
        deployer.status(handle)


def test_function_package_is_required(new_request) -> None:
    deployer = ssh.SshDeployer(target=TARGET, s3_client=None, runner=Runner())
    with pytest.raises(ValueError, match="needs function_package"):
        deployer.deploy(new_request("deeplens_abc"))


def test_unpack_function_writes_config_and_refuses_escaping_entries(tmp_path: Path) -> None:
    folder = ssh.unpack_function(
        lambda_package.build_deployment_zip(), tmp_path / "f", {"model_name": "deploy_m"}
    )
    assert json.loads((folder / "deeplens_config.json").read_text()) == {"model_name": "deploy_m"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../evil.py", "x")
    with pytest.raises(ValueError, match="would escape"):
        ssh.unpack_function(buffer.getvalue(), tmp_path / "g", {})
    assert not (tmp_path / "evil.py").exists()


def test_unpack_function_refuses_a_sibling_folder_sharing_its_prefix(tmp_path: Path) -> None:
    """``../f2/x`` from ``f`` resolves to ``.../f2/x``, which starts with the text ``.../f``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("deeplens_inference.py", "")
        archive.writestr("../f2/evil.py", "x")
    with pytest.raises(ValueError, match="would escape"):
        ssh.unpack_function(buffer.getvalue(), tmp_path / "f", {})
    assert not (tmp_path / "f2").exists()
