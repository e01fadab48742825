"""A Greengrass V2 core on the simulated DeepLens: takes its deployments and applies them for real.

A real nucleus keeps a connection to AWS IoT and takes each deployment as an IoT job; the cloud
never calls the device. This agent does the same against the emulator: it registers the core with
a deployment agent, polls ``.../core-devices/<thing>/deployments/next`` and reports each outcome
(see :mod:`emulator.extension.greengrass_v2`, which has already run the nucleus's checks: platform,
credentials through the role alias, artifact permissions and digests).

What it does per component, as aws-greengrass-nucleus does (paths under ``/greengrass/v2``, the
nucleus's root, on the device):

- stops the component's previous process, and those of components the deployment no longer has;
- downloads each ``s3://`` artifact (boto3 against the emulator's S3) to
  ``packages/artifacts/<component>/<version>/<file>`` and checks its ``Digest``; unpacks ``Unarchive:
  ZIP`` ones into ``packages/artifacts-unarchived/<component>/<version>/<zip name without .zip>/``;
- substitutes recipe variables: ``{artifacts:path}``, ``{artifacts:decompressedPath}``,
  ``{work:path}``, ``{kernel:rootPath}``, ``{iot:thingName}``, ``{configuration:/json/pointer}``;
- applies the lifecycle's ``Setenv`` (and a step's own), runs ``Install`` (``sh -c``, in
  ``work/<component>``, ``Timeout`` 120 s by default, up to 3 attempts; ``RequiresPrivilege``
  through ``sudo -n -E -H -u root --``), then starts ``Run`` as a long-running process (the
  supervisor), its output in ``logs/<component>.log``.

The deployment is COMPLETED once every Install succeeded and every Run started (and had not failed
within ``run_grace_seconds``). An Install that keeps failing, or a Run that exits with an error at
once, leaves the component BROKEN: the deployment FAILS with the nucleus's report ("Service <name> in
broken state after deployment", ``errorStack`` DEPLOYMENT_FAILURE > COMPONENT_UPDATE_ERROR >
COMPONENT_BROKEN, ``errorTypes`` USER_COMPONENT_ERROR: aws-greengrass-nucleus
``DeploymentConfigMerger.waitForServicesToStart`` and the "Detailed deployment error codes" page).
With the ``ROLLBACK`` failure policy the previous components are started again.

Not simulated: component users (every step runs as the namespace's uid 0, ``RequiresPrivilege`` or
not), dependencies between components, ``Startup``/``Shutdown``/``Recover`` steps, ``docker:`` and
``greengrass:`` artifacts.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from emulator.simulated_deeplens.device_root import GREENGRASS_V2_ROOT
from emulator.simulated_deeplens.supervisor import FunctionSupervisor

log = logging.getLogger("emulator.simulated_deeplens.greengrass")

REGISTER_PATH = "/moto-api/emulator/greengrass-v2/core-devices"
DEFAULT_ROLE_ALIAS = "GreengrassV2TokenExchangeRoleAlias"
DEFAULT_INSTALL_TIMEOUT = 120.0
INSTALL_ATTEMPTS = 3
SERVICE_PREFIX = "greengrass-v2:"
PRIVILEGED = ("sudo", "-n", "-E", "-H", "-u", "root", "--")
BROKEN_STACK = ["DEPLOYMENT_FAILURE", "COMPONENT_UPDATE_ERROR", "COMPONENT_BROKEN"]
BROKEN_TYPES = ["USER_COMPONENT_ERROR"]
_VARIABLE = re.compile(
    r"\{(?:(?P<component>[^:{}]+):)?"
    r"(?P<namespace>artifacts|work|kernel|iot|configuration):(?P<key>[^{}]+)\}"
)

ComponentEnvironment = Callable[[str, Mapping[str, Any]], dict[str, str]]
"""``(component name, its configuration) -> variables`` for its processes (the IPC socket and SVCUID)."""


class DeploymentFailed(Exception):
    """The deployment failed on the device: reason and the nucleus's error codes."""

    def __init__(self, reason: str, stack: list[str], types: list[str]) -> None:
        super().__init__(reason)
        self.reason, self.stack, self.types = reason, stack, types


@dataclass
class _Running:
    name: str
    version: str
    document: dict[str, Any]


class GreengrassCore:
    """The simulated nucleus of ``thing_name`` on a device (its shell and supervisor)."""

    def __init__(
        self,
        supervisor: FunctionSupervisor,
        *,
        endpoint_url: str,
        region: str,
        thing_name: str,
        account_id: str | None = None,
        role_alias: str = DEFAULT_ROLE_ALIAS,
        component_environment: ComponentEnvironment | None = None,
        poll_interval: float = 0.2,
        run_grace_seconds: float = 0.5,
    ) -> None:
        self.supervisor = supervisor
        self.root = supervisor.shell.root
        self.endpoint_url = endpoint_url.rstrip("/")
        self.region, self.thing_name, self.account_id = region, thing_name, account_id
        self.role_alias = role_alias
        self.component_environment = component_environment
        self.poll_interval = poll_interval
        self.run_grace_seconds = run_grace_seconds
        self.running: dict[str, _Running] = {}
        self.applied: list[tuple[str, str]] = []
        """``(deploymentId, COMPLETED | FAILED)`` of every deployment applied, in order."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=region,
            aws_access_key_id="deeplens-device",
            aws_secret_access_key="deeplens-device",
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )

    # --- the cloud connection ---------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        body = {"region": self.region, **({"accountId": self.account_id} if self.account_id else {}), **body}
        request = urllib.request.Request(
            f"{self.endpoint_url}{REGISTER_PATH}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            data = response.read()
            return response.status, json.loads(data) if data else None

    def register(self) -> dict[str, Any]:
        """Connect as the core device (with this agent taking its deployments)."""
        _, core = self._post(
            "",
            {
                "coreDeviceThingName": self.thing_name,
                "iotRoleAlias": self.role_alias,
                "deploymentAgent": True,
            },
        )
        return core

    def start(self) -> GreengrassCore:
        """Register, then take deployments in a background thread."""
        self.register()
        self._thread = threading.Thread(target=self._loop, name=f"gg2-core-{self.thing_name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling and stop the components."""
        self._stop.set()
        if self._thread:
            self._thread.join(30)
        for name in list(self.running):
            self.supervisor.stop(SERVICE_PREFIX + name)
        self.running.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                status, document = self._post(f"/{self.thing_name}/deployments/next", {})
            except (OSError, urllib.error.URLError, ValueError) as err:
                log.warning("core %s cannot reach the cloud: %s", self.thing_name, err)
                status, document = 0, None
            if status == 200 and document:
                self.apply_and_report(document)
                continue
            self._stop.wait(self.poll_interval)

    def apply_and_report(self, document: dict[str, Any]) -> str:
        """Apply ``document`` and report its outcome; the status reported."""
        deployment_id = document["deploymentId"]
        body: dict[str, Any]
        try:
            self.apply(document)
            body = {"status": "COMPLETED"}
        except DeploymentFailed as failure:
            log.warning("deployment %s failed on %s: %s", deployment_id, self.thing_name, failure.reason)
            body = {
                "status": "FAILED",
                "reason": failure.reason,
                "errorStack": failure.stack,
                "errorTypes": failure.types,
            }
        except Exception as err:  # the nucleus reports what it did not expect, too
            log.exception("deployment %s crashed on %s", deployment_id, self.thing_name)
            body = {
                "status": "FAILED",
                "reason": f"Deployment failed on the device: {err}",
                "errorStack": ["DEPLOYMENT_FAILURE", "NUCLEUS_ERROR"],
                "errorTypes": ["UNKNOWN_ERROR"],
            }
        self.applied.append((deployment_id, body["status"]))
        self._post(f"/{self.thing_name}/deployments/{deployment_id}", body)
        return body["status"]

    # --- applying a deployment ------------------------------------------------------------

    def apply(self, document: dict[str, Any]) -> None:
        """Stop the previous components, install and run the new ones; DeploymentFailed otherwise."""
        previous = dict(self.running)
        for name in list(self.running):
            self.supervisor.stop(SERVICE_PREFIX + name)
        self.running.clear()
        try:
            for name, component in (document.get("components") or {}).items():
                self._deploy_component(name, component)
                self.running[name] = _Running(name, component["componentVersion"], component)
        except DeploymentFailed as failure:
            for name in list(self.running):
                self.supervisor.stop(SERVICE_PREFIX + name)
            self.running.clear()
            policy = (document.get("deploymentPolicies") or {}).get("failureHandlingPolicy", "ROLLBACK")
            if policy == "ROLLBACK" and previous:
                for name, old in previous.items():
                    try:
                        self._deploy_component(name, old.document, download=False)
                        self.running[name] = old
                    except DeploymentFailed as err:
                        log.warning("rollback of %s failed: %s", name, err.reason)
            raise failure

    def _paths(self, name: str, version: str) -> dict[str, str]:
        return {
            "artifacts": f"{GREENGRASS_V2_ROOT}/packages/artifacts/{name}/{version}",
            "unarchived": f"{GREENGRASS_V2_ROOT}/packages/artifacts-unarchived/{name}/{version}",
            "work": f"{GREENGRASS_V2_ROOT}/work/{name}",
            "log": f"{GREENGRASS_V2_ROOT}/logs/{name}.log",
        }

    def _deploy_component(self, name: str, component: dict[str, Any], *, download: bool = True) -> None:
        version = component["componentVersion"]
        manifest = component.get("manifest") or {}
        paths = self._paths(name, version)
        if download:
            for artifact in _field(manifest, "Artifacts") or []:
                self._download(name, artifact, paths)
        self.root.host_path(paths["work"]).mkdir(parents=True, exist_ok=True)
        configuration = component.get("configuration") or {}

        def substitute(text: str) -> str:
            return _substitute(text, name, paths, configuration, self.thing_name)

        lifecycle = _field(manifest, "Lifecycle")
        if lifecycle is None:
            lifecycle = _field(component.get("recipe") or {}, "Lifecycle") or {}
        if isinstance(lifecycle, str):
            lifecycle = {"Run": lifecycle}
        env = {k: substitute(str(v)) for k, v in (_field(lifecycle, "Setenv") or {}).items()}
        env.update(AWS_IOT_THING_NAME=self.thing_name, AWS_REGION=self.region, AWS_DEFAULT_REGION=self.region)
        if self.component_environment:
            env.update(self.component_environment(name, configuration))
        install = _field(lifecycle, "Install")
        if install is not None:
            self._install(name, _step(install), env, paths, substitute)
        run = _field(lifecycle, "Run")
        if run is not None:
            self._run(name, _step(run), env, paths, substitute)

    def _download(self, name: str, artifact: dict[str, Any], paths: dict[str, str]) -> None:
        uri = str(_field(artifact, "URI"))
        prefix = f"Failed to download artifact {uri} of component {name}"
        if not uri.startswith("s3://") or "/" not in uri[5:]:
            raise DeploymentFailed(
                f"{prefix}: the simulated core downloads s3:// artifacts only",
                ["DEPLOYMENT_FAILURE", "ARTIFACT_DOWNLOAD_ERROR", "UNSUPPORTED_ARTIFACT_SCHEME"],
                ["COMPONENT_RECIPE_ERROR"],
            )
        bucket, key = uri[5:].split("/", 1)
        try:
            data = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as err:
            raise DeploymentFailed(
                f"{prefix}: {err}",
                ["DEPLOYMENT_FAILURE", "ARTIFACT_DOWNLOAD_ERROR", "S3_GET_OBJECT_ERROR"],
                ["DEPENDENCY_ERROR"],
            ) from None
        digest = _field(artifact, "Digest")
        if digest and digest != base64.b64encode(hashlib.sha256(data).digest()).decode():
            raise DeploymentFailed(
                f"{prefix}: Integrity check for downloaded artifact failed. Probably due to file corruption.",
                ["DEPLOYMENT_FAILURE", "ARTIFACT_DOWNLOAD_ERROR", "ARTIFACT_CHECKSUM_MISMATCH"],
                ["COMPONENT_RECIPE_ERROR"],
            )
        file_name = key.rsplit("/", 1)[-1]
        target = self.root.host_path(f"{paths['artifacts']}/{file_name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if str(_field(artifact, "Unarchive") or "NONE").upper() == "ZIP":
            stem = file_name[: -len(".zip")] if file_name.lower().endswith(".zip") else file_name
            _unzip(data, self.root.host_path(f"{paths['unarchived']}/{stem}"), uri, name)
        log.info("component %s: artifact %s downloaded (%d bytes)", name, uri, len(data))

    def _command(self, step: dict[str, Any], substitute: Callable[[str], str]) -> list[str]:
        script = substitute(str(_field(step, "Script") or ""))
        prefix = list(PRIVILEGED) if _truthy(_field(step, "RequiresPrivilege")) else []
        return [*prefix, "/bin/sh", "-c", script]

    def _install(
        self,
        name: str,
        step: dict[str, Any],
        env: dict[str, str],
        paths: dict[str, str],
        substitute: Callable[[str], str],
    ) -> None:
        command = self._command(step, substitute)
        step_env = {**env, **{k: substitute(str(v)) for k, v in (_field(step, "Setenv") or {}).items()}}
        timeout = float(_field(step, "Timeout") or DEFAULT_INSTALL_TIMEOUT)
        host_log = self.root.host_path(paths["log"])
        host_log.parent.mkdir(parents=True, exist_ok=True)
        last = ""
        for attempt in range(1, INSTALL_ATTEMPTS + 1):
            with host_log.open("ab") as out:
                out.write(f"[install attempt {attempt}] {shlex.join(command)}\n".encode())
                out.flush()
                try:
                    result = self.supervisor.shell.run(
                        command,
                        cwd=paths["work"],
                        env=step_env,
                        timeout=timeout,
                        capture_output=False,
                        stdout=out,
                        stderr=out,
                    )
                except subprocess.TimeoutExpired:
                    last = f"Install timed out after {timeout:g}s"
                    continue
            if result.returncode == 0:
                log.info("component %s: installed", name)
                return
            last = f"Install script exited with {result.returncode}"
        tail = host_log.read_text(errors="replace").strip().splitlines()[-5:]
        raise DeploymentFailed(
            f"Service {name} in broken state after deployment ({last} {INSTALL_ATTEMPTS} times; "
            f"{paths['log']}: {' | '.join(tail)})",
            BROKEN_STACK,
            BROKEN_TYPES,
        )

    def _run(
        self,
        name: str,
        step: dict[str, Any],
        env: dict[str, str],
        paths: dict[str, str],
        substitute: Callable[[str], str],
    ) -> None:
        step_env = {**env, **{k: substitute(str(v)) for k, v in (_field(step, "Setenv") or {}).items()}}
        service = SERVICE_PREFIX + name
        self.supervisor.start(
            service, self._command(step, substitute), cwd=paths["work"], log_file=paths["log"], env=step_env
        )
        deadline = time.monotonic() + self.run_grace_seconds
        while time.monotonic() < deadline and self.supervisor.is_running(service):
            time.sleep(0.05)
        code = self.supervisor.returncode(service)
        if code not in (None, 0):
            tail = self.root.host_path(paths["log"]).read_text(errors="replace").strip().splitlines()[-5:]
            raise DeploymentFailed(
                f"Service {name} in broken state after deployment "
                f"(Run exited with {code}; {paths['log']}: {' | '.join(tail)})",
                BROKEN_STACK,
                BROKEN_TYPES,
            )
        log.info("component %s: running", name)


def _field(mapping: Any, name: str) -> Any:
    """``mapping[name]`` with the key matched case-insensitively, as the recipe parser does."""
    if not isinstance(mapping, dict):
        return None
    return next((v for k, v in mapping.items() if isinstance(k, str) and k.lower() == name.lower()), None)


def _step(step: Any) -> dict[str, Any]:
    return {"Script": step} if isinstance(step, str) else dict(step or {})


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _pointer(configuration: Any, pointer: str) -> Any:
    value = configuration
    for part in [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/") if p]:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _substitute(
    text: str, name: str, paths: dict[str, str], configuration: Mapping[str, Any], thing_name: str
) -> str:
    """``text`` with the recipe variables of component ``name`` replaced (unknown ones left as is)."""

    def value(match: re.Match[str]) -> str:
        if match.group("component") not in (None, name):
            return match.group(0)
        namespace, key = match.group("namespace"), match.group("key")
        known = {
            ("artifacts", "path"): paths["artifacts"],
            ("artifacts", "decompressedPath"): paths["unarchived"],
            ("work", "path"): paths["work"],
            ("kernel", "rootPath"): GREENGRASS_V2_ROOT,
            ("iot", "thingName"): thing_name,
        }
        if namespace == "configuration":
            found = _pointer(configuration, key)
            if found is None:
                return ""
            return found if isinstance(found, str) else json.dumps(found)
        return known.get((namespace, key), match.group(0))

    return _VARIABLE.sub(value, text)


def _unzip(data: bytes, folder: Path, uri: str, component: str) -> None:
    root = folder.resolve()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.infolist():
                if not (root / member.filename).resolve().is_relative_to(root):
                    raise zipfile.BadZipFile(f"entry {member.filename!r} would escape {folder.name}")
            archive.extractall(folder)
            for member in archive.infolist():
                mode = (member.external_attr >> 16) & 0o777
                if mode and not member.is_dir():
                    (folder / member.filename).chmod(mode | 0o400)
    except zipfile.BadZipFile as err:
        raise DeploymentFailed(
            f"Failed to unarchive artifact {uri} of component {component}: {err}",
            ["DEPLOYMENT_FAILURE", "ARTIFACT_DOWNLOAD_ERROR", "IO_ERROR", "IO_UNZIP_ERROR"],
            ["DEVICE_ERROR"],
        ) from None
