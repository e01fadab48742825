"""Deploy straight to the device over SSH: what still works after DeepLens device management closed.

AWS closed the DeepLens console and device management on 31 January 2024, but a DeepLens keeps
running Ubuntu with ``awscam``, ``mo`` and an SSH server. This deployer copies the repacked model
archive and the inference function (with its settings as ``deeplens_config.json``, the
function's fallback configuration) to the device with the system ``scp``, unpacks the model in
``/opt/awscam/artifacts``, installs the function into ``function_dir`` and runs a restart command.

The device keeps running its last Greengrass V1 deployment after device management closed, so
the usual target is that deployment's copy of the function
(``/greengrass/ggc/deployment/lambda/<function version ARN>``) with the default restart command
``sudo -n systemctl restart greengrassd``: the core restarts the pinned function with the new
code and model. Both are parameters, for devices set up otherwise.

It uses the ``ssh``/``scp`` commands through ``subprocess`` (no SSH library needed on MWAA's
image) with ``BatchMode`` so nothing ever waits for a password. ``dry_run`` only logs the commands.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import re
import shlex
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deeplens_pipeline.deploy.base import (
    DEVICE_ARTIFACTS_DIR,
    FAILURE,
    SUCCESS,
    DeploymentHandle,
    DeploymentRequest,
    DeploymentStatus,
    split_s3_uri,
)

logger = logging.getLogger(__name__)

METHOD = "ssh"
DEFAULT_FUNCTION_DIR = "/opt/deeplens-pipeline/function"
DEFAULT_RESTART_COMMAND = "sudo -n systemctl restart greengrassd"
CONFIG_FILE_NAME = "deeplens_config.json"
ENTRY_MODULE = "deeplens_inference.py"
_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9_./-]*$")

# What an SSH target's settings may be: the DAG's Params check them before the run's first AWS call
# (deeplens_pipeline.params) with these same rules, and SshTarget checks them again. The patterns are
# portable: Python's re and ECMA-262 (JSON schema) read them alike. "(?![\s\S])" is the end of the
# text in both (Python's "$" also matches before a final newline, and ECMA-262 has no "\Z"), and the
# character classes are ASCII, so no newline, tab or other control character gets through.
HOST_PATTERN = r"^(?!-)[A-Za-z0-9_.:\[\]-]{1,255}(?![\s\S])"
HOST_RULE = (
    "a host name or an IP address: 1 to 255 letters, digits, '.', '-', '_', ':', '[' or ']', "
    "not beginning with '-'"
)
USER_PATTERN = r"^(?!-)[A-Za-z0-9_.-]{1,64}(?![\s\S])"
USER_RULE = "a user name: 1 to 64 letters, digits, '.', '-' or '_', not beginning with '-'"
KEY_FILE_PATTERN = r"^(?!-)[^\u0000-\u001f\u007f-\u009f\u2028\u2029]{1,1024}(?![\s\S])"
KEY_FILE_RULE = (
    "a path of a file on the worker: 1 to 1024 characters, not beginning with '-', no control characters"
)
_HOST = re.compile(HOST_PATTERN)
_USER = re.compile(USER_PATTERN)
_KEY_FILE = re.compile(KEY_FILE_PATTERN)


def is_host(value: Any) -> bool:
    """True when ``value`` can be the device's address (HOST_RULE): ``ssh`` cannot read it as an option."""
    return isinstance(value, str) and bool(_HOST.search(value))


def is_user(value: Any) -> bool:
    """True when ``value`` can be the login (USER_RULE)."""
    return isinstance(value, str) and bool(_USER.search(value))


def is_key_file(value: Any) -> bool:
    """True when ``value`` can be given to ``ssh -i`` (KEY_FILE_RULE)."""
    return isinstance(value, str) and bool(_KEY_FILE.search(value))


Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]


def run_command(argv: Sequence[str], timeout: float = 600.0) -> subprocess.CompletedProcess:
    """Run ``argv`` (no shell) and capture its output."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


@dataclass(frozen=True)
class SshTarget:
    """How to reach the device: ``user@host:port`` with a private key; host keys are checked."""

    host: str
    user: str = "aws_cam"
    key_file: str | None = None
    port: int = 22
    known_hosts_file: str | None = None
    strict_host_key_checking: bool = True
    connect_timeout: int = 15

    def __post_init__(self) -> None:
        if not is_host(self.host):
            raise ValueError(f"ssh host {self.host!r} is not {HOST_RULE}")
        if not is_user(self.user):
            raise ValueError(f"ssh user {self.user!r} is not {USER_RULE}")
        if not 1 <= int(self.port) <= 65535:
            raise ValueError(f"ssh port {self.port} is outside 1..65535")
        if self.key_file and not is_key_file(self.key_file):
            raise ValueError(f"ssh key file {self.key_file!r} is not {KEY_FILE_RULE}")

    @property
    def destination(self) -> str:
        """``user@host``."""
        return f"{self.user}@{self.host}"

    def options(self) -> list[str]:
        """Options shared by ``ssh`` and ``scp``: never prompt, check host keys, use the key."""
        options = [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={int(self.connect_timeout)}",
            "-o", f"StrictHostKeyChecking={'yes' if self.strict_host_key_checking else 'accept-new'}",
        ]  # fmt: skip
        if self.known_hosts_file:
            options += ["-o", f"UserKnownHostsFile={self.known_hosts_file}"]
        if self.key_file:
            options += ["-i", self.key_file, "-o", "IdentitiesOnly=yes"]
        return options

    def ssh(self, remote_command: str) -> list[str]:
        """``ssh`` running ``remote_command`` (a shell command line, already quoted) on the device."""
        return ["ssh", "-p", str(int(self.port)), *self.options(), self.destination, "--", remote_command]

    def scp(self, sources: Sequence[str], remote_dir: str) -> list[str]:
        """``scp`` copying local ``sources`` (files or folders) into ``remote_dir`` on the device.

        ``remote_dir`` is not quoted (newer ``scp`` uses SFTP, where no shell reads it), so it
        must be a plain absolute path.
        """
        if not _PLAIN_PATH.match(remote_dir):
            raise ValueError(
                f"remote folder {remote_dir!r} must be an absolute path of letters, digits, '_', '.', '-'"
            )
        return [
            "scp", "-P", str(int(self.port)), *self.options(), "-r", "-q",
            *sources, f"{self.destination}:{remote_dir.rstrip('/')}/",
        ]  # fmt: skip


@dataclass(frozen=True)
class SshStep:
    """One command of a deployment, with what it does."""

    description: str
    argv: tuple[str, ...]

    def display(self) -> str:
        """The command as a shell line (for logs)."""
        return shlex.join(self.argv)


@dataclass(frozen=True)
class RemoteLayout:
    """Where things go on the device."""

    artifacts_dir: str = DEVICE_ARTIFACTS_DIR
    function_dir: str = DEFAULT_FUNCTION_DIR
    restart_command: str = DEFAULT_RESTART_COMMAND
    use_sudo: bool = True

    def __post_init__(self) -> None:
        for name in ("artifacts_dir", "function_dir"):
            path = getattr(self, name)
            if not path.startswith("/") or path.rstrip("/") in ("", "/"):
                raise ValueError(f"{name} {path!r} must be an absolute folder other than /")

    def sudo(self, command: str) -> str:
        """``command`` prefixed with non-interactive sudo when ``use_sudo``."""
        return f"sudo -n {command}" if self.use_sudo else command


def deployment_plan(
    target: SshTarget,
    layout: RemoteLayout,
    *,
    staging_dir: str,
    local_model_archive: str,
    local_function_dir: str,
) -> list[SshStep]:
    """The commands that install the model and the function and restart it, in order."""
    q = shlex.quote
    model_file = posixpath.basename(local_model_archive)
    function_folder = posixpath.basename(local_function_dir.rstrip("/"))
    staged_model = posixpath.join(staging_dir, model_file)
    staged_function = posixpath.join(staging_dir, function_folder)
    artifacts, function_dir = layout.artifacts_dir, layout.function_dir.rstrip("/")
    if model_file.endswith(".zip"):
        unpack = f"unzip -o {q(staged_model)} -d {q(artifacts)}"
    else:
        unpack = f"tar -xzf {q(staged_model)} -C {q(artifacts)}"
    install_model = f"{layout.sudo(f'mkdir -p {q(artifacts)}')} && {layout.sudo(unpack)}"
    copy_function = f"cp -R {q(staged_function + '/.')} {q(function_dir + '/')}"
    install_function = f"{layout.sudo(f'mkdir -p {q(function_dir)}')} && {layout.sudo(copy_function)}"
    return [
        SshStep("create the staging folder", tuple(target.ssh(f"mkdir -p {q(staging_dir)}"))),
        SshStep(
            "copy the model archive and the function",
            tuple(target.scp([local_model_archive, local_function_dir], staging_dir)),
        ),
        SshStep(f"unpack the model into {artifacts}", tuple(target.ssh(install_model))),
        SshStep(f"install the function into {layout.function_dir}", tuple(target.ssh(install_function))),
        SshStep("restart the function", tuple(target.ssh(layout.restart_command))),
        SshStep("remove the staging folder", tuple(target.ssh(f"rm -rf {q(staging_dir)}"))),
    ]


def verification_command(target: SshTarget, layout: RemoteLayout, model_name: str) -> list[str]:
    """``ssh`` checking that the function and the model's graph are where the function expects them."""
    q = shlex.quote
    entry = posixpath.join(layout.function_dir, ENTRY_MODULE)
    graph = posixpath.join(layout.artifacts_dir, f"{model_name}-symbol.json")
    return target.ssh(f"test -f {q(entry)} && test -f {q(graph)}")


def unpack_function(package: bytes, folder: Path, config: dict[str, Any]) -> Path:
    """Unpack the function's zip into ``folder`` and add its settings as ``deeplens_config.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    root = folder.resolve()
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        for member in archive.namelist():
            if not (root / member).resolve().is_relative_to(root):
                raise ValueError(f"function package entry {member!r} would escape {folder}")
        archive.extractall(folder)
    if not (folder / ENTRY_MODULE).is_file():
        raise ValueError(f"function package has no {ENTRY_MODULE}")
    (folder / CONFIG_FILE_NAME).write_text(
        json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return folder


@dataclass
class SshDeployer:
    """Deploys over SSH; ``s3_client`` downloads the model archive, ``runner`` runs commands."""

    target: SshTarget
    s3_client: Any
    layout: RemoteLayout = field(default_factory=RemoteLayout)
    runner: Runner = run_command
    dry_run: bool = False
    method: str = METHOD

    def _run(self, step: SshStep) -> subprocess.CompletedProcess:
        logger.info("%s: %s", step.description, step.display())
        result = self.runner(step.argv)
        if result.returncode != 0:
            output = (result.stderr or result.stdout or "").strip()[-2000:]
            raise RuntimeError(
                f"ssh step '{step.description}' failed with exit code {result.returncode}: {output}"
            )
        return result

    def deploy(self, request: DeploymentRequest) -> DeploymentHandle:
        """Copy, unpack, install and restart; synchronous (the handle's status is final at once)."""
        if request.function_package is None:
            raise ValueError(
                "the ssh method needs function_package: the function's zip to copy to the device"
            )
        bucket, key = split_s3_uri(request.model_s3_uri, "model_s3_uri")
        staging_dir = f"/tmp/deeplens-deploy-{request.run_token}"
        details = {
            "host": self.target.host,
            "artifacts_dir": self.layout.artifacts_dir,
            "function_dir": self.layout.function_dir,
            "model_name": request.settings.model_name,
        }
        with tempfile.TemporaryDirectory(prefix="deeplens-ssh-") as work:
            local_model = str(Path(work) / posixpath.basename(key))
            local_function = str(Path(work) / "function")
            plan = deployment_plan(
                self.target,
                self.layout,
                staging_dir=staging_dir,
                local_model_archive=local_model,
                local_function_dir=local_function,
            )
            if self.dry_run:
                for step in plan:
                    logger.info("[dry run] %s: %s", step.description, step.display())
                return DeploymentHandle(
                    METHOD,
                    f"ssh-dry-run-{request.run_token}",
                    request.thing_name,
                    None,
                    {**details, "dry_run": True, "commands": [step.display() for step in plan]},
                )
            logger.info("Downloading %s", request.model_s3_uri)
            self.s3_client.download_file(bucket, key, local_model)
            unpack_function(
                request.function_package, Path(local_function), request.device_settings.config_file()
            )
            for step in plan:
                self._run(step)
        return DeploymentHandle(METHOD, f"ssh-{request.run_token}", request.thing_name, None, details)

    def status(self, handle: DeploymentHandle) -> DeploymentStatus:
        """Checks on the device that the function and the model's graph are in place."""
        if handle.details.get("dry_run"):
            raise ValueError("a dry run deploys nothing: there is no status to check")
        layout = replace(
            self.layout,
            artifacts_dir=handle.details.get("artifacts_dir", self.layout.artifacts_dir),
            function_dir=handle.details.get("function_dir", self.layout.function_dir),
        )
        argv = verification_command(self.target, layout, handle.details["model_name"])
        result = self.runner(argv)
        if result.returncode == 0:
            return DeploymentStatus(SUCCESS, raw_status="verified")
        output = (result.stderr or result.stdout or "").strip()[-2000:]
        return DeploymentStatus(
            FAILURE,
            error_message=(
                f"{ENTRY_MODULE} or {handle.details['model_name']}-symbol.json is missing on "
                f"{self.target.host} (exit {result.returncode}) {output}"
            ).strip(),
            raw_status="missing",
        )
