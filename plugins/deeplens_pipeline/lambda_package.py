"""Package and publish the DeepLens inference function as a Lambda version (seed step 6).

The deployment zip is byte-for-byte deterministic (sorted entries, fixed timestamps and modes,
no compression), so unchanged code keeps its ``CodeSha256`` and publishing again returns the
existing version instead of creating a new one. The boto3 ``lambda`` client is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FUNCTION_NAME_PREFIX = "deeplens-"
LAMBDA_SRC_ENV = "DEEPLENS_LAMBDA_SRC"
ENTRY_MODULE = "deeplens_inference.py"
DEFAULT_HANDLER = "deeplens_inference.function_handler"
DEFAULT_RUNTIME = "python3.7"
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry
ZIP_FILE_MODE = 0o100644  # regular file, rw-r--r--
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_SKIPPED_DIRS = {"__pycache__"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


def locate_lambda_source() -> Path:
    """The folder holding the inference function's code.

    Looked up in order: ``$DEEPLENS_LAMBDA_SRC``; ``deeplens_pipeline/lambda_src`` (the copy
    shipped inside plugins.zip on MWAA); ``<repository>/include/lambda`` (a checkout).
    """
    package_dir = Path(__file__).resolve().parent
    candidates: list[tuple[str, Path]] = []
    if os.environ.get(LAMBDA_SRC_ENV):
        candidates.append((f"${LAMBDA_SRC_ENV}", Path(os.environ[LAMBDA_SRC_ENV])))
    candidates.append(("package data", package_dir / "lambda_src"))
    candidates.append(("repository", package_dir.parents[1] / "include" / "lambda"))
    for _, folder in candidates:
        if (folder / ENTRY_MODULE).is_file():
            return folder
    tried = "; ".join(f"{label}: {folder}" for label, folder in candidates)
    raise FileNotFoundError(f"no inference function source ({ENTRY_MODULE}) found; looked in {tried}")


def source_files(source_dir: Path) -> list[tuple[str, Path]]:
    """``(archive name, path)`` of every file to package, sorted by archive name.

    Skips caches, compiled files and hidden files, which differ between machines.
    """
    if not (source_dir / ENTRY_MODULE).is_file():
        raise FileNotFoundError(f"{source_dir} has no {ENTRY_MODULE}: not the inference function's folder")
    files = []
    for path in source_dir.rglob("*"):
        relative = path.relative_to(source_dir)
        if any(part in _SKIPPED_DIRS or part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and not path.name.endswith(_SKIPPED_SUFFIXES):
            files.append((relative.as_posix(), path))
    return sorted(files)


def build_deployment_zip(source_dir: Path | None = None) -> bytes:
    """The deployment package of the function: the same files always give the same bytes."""
    source_dir = source_dir or locate_lambda_source()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, path in source_files(source_dir):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
            info.create_system = 3  # Unix, whatever the building machine
            info.external_attr = ZIP_FILE_MODE << 16
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def code_sha256(package: bytes) -> str:
    """Lambda's ``CodeSha256`` of a package: base64 of its SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(package).digest()).decode("ascii")


def check_function_name(name: str) -> str:
    """Return ``name`` if Lambda and DeepLens accept it, else raise ValueError with the reason."""
    if not isinstance(name, str) or not name.startswith(FUNCTION_NAME_PREFIX):
        raise ValueError(
            f"Lambda function name {name!r} must begin with {FUNCTION_NAME_PREFIX!r}: "
            "AWS DeepLens only reads inference functions named so (seed step 6)"
        )
    if not _FUNCTION_NAME.match(name):
        raise ValueError(
            f"Lambda function name {name!r} must be 1-64 letters, digits, '-' or '_' (Lambda's rule)"
        )
    return name


@dataclass(frozen=True)
class FunctionSpec:
    """What the function should be: name, execution role, runtime, handler, limits, environment.

    ``runtime`` is what the DeepLens runs (Python 3.7). ``environment`` holds the inference
    settings (see ``deploy.inference_settings``), so the published version describes itself.
    """

    name: str
    role_arn: str
    runtime: str = DEFAULT_RUNTIME
    handler: str = DEFAULT_HANDLER
    timeout: int = 30
    memory_size: int = 1536
    environment: Mapping[str, str] = field(default_factory=dict)
    description: str = "AWS DeepLens object detection inference (deeplens-object-detection pipeline)"

    def __post_init__(self) -> None:
        check_function_name(self.name)
        if (
            not isinstance(self.role_arn, str)
            or not self.role_arn.startswith("arn:")
            or ":role/" not in self.role_arn
        ):
            raise ValueError(
                f"role_arn {self.role_arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
            )
        if not 1 <= int(self.timeout) <= 900:
            raise ValueError(f"timeout {self.timeout} is outside Lambda's 1..900 seconds")
        if not 128 <= int(self.memory_size) <= 10240:
            raise ValueError(f"memory_size {self.memory_size} is outside Lambda's 128..10240 MB")
        object.__setattr__(self, "environment", dict(self.environment))

    def configuration(self) -> dict[str, Any]:
        """The configuration fields compared with, and sent to, Lambda."""
        return {
            "Runtime": self.runtime,
            "Handler": self.handler,
            "Role": self.role_arn,
            "Timeout": int(self.timeout),
            "MemorySize": int(self.memory_size),
            "Description": self.description,
            "Environment": {"Variables": dict(self.environment)},
        }


def configuration_differences(current: Mapping[str, Any], spec: FunctionSpec) -> list[str]:
    """Names of the configuration fields where ``current`` (a Lambda configuration) differs from ``spec``."""
    differences = []
    for key, wanted in spec.configuration().items():
        if key == "Environment":
            have = (current.get("Environment") or {}).get("Variables") or {}
            if have != wanted["Variables"]:
                differences.append(key)
        elif current.get(key) != wanted:
            differences.append(key)
    return differences


@dataclass(frozen=True)
class PublishedVersion:
    """A published version of the function."""

    function_arn: str
    version: str
    version_arn: str
    code_sha256: str
    created: bool

    def to_dict(self) -> dict[str, str]:
        """The operator's XCom result."""
        return {
            "function_arn": self.function_arn,
            "version": self.version,
            "version_arn": self.version_arn,
            "code_sha256": self.code_sha256,
        }


def unqualified_arn(function_arn: str) -> str:
    """The function ARN without a version or alias qualifier."""
    prefix, separator, rest = function_arn.partition(":function:")
    if not separator:
        raise ValueError(f"{function_arn!r} is not a Lambda function ARN")
    return f"{prefix}{separator}{rest.split(':', 1)[0]}"


def _revision(config: Mapping[str, Any]) -> dict[str, str]:
    """``RevisionId`` guard for an update, when the service reports one."""
    return {"RevisionId": config["RevisionId"]} if config.get("RevisionId") else {}


def create_or_update_function(client: Any, spec: FunctionSpec, package: bytes) -> dict[str, Any]:
    """Make ``$LATEST`` hold ``package`` and ``spec``'s configuration; return its configuration.

    Creates the function if missing; otherwise uploads code only when its ``CodeSha256`` differs
    and updates configuration only when a compared field differs, each guarded by ``RevisionId``.
    """
    sha = code_sha256(package)
    try:
        current = client.get_function_configuration(FunctionName=spec.name)
    except client.exceptions.ResourceNotFoundException:
        logger.info("Creating Lambda function %s (%s)", spec.name, spec.runtime)
        client.create_function(
            FunctionName=spec.name, Code={"ZipFile": package}, Publish=False, **spec.configuration()
        )
        client.get_waiter("function_active_v2").wait(FunctionName=spec.name)
        return client.get_function_configuration(FunctionName=spec.name)
    if current.get("CodeSha256") != sha:
        logger.info("Updating the code of %s (%s -> %s)", spec.name, current.get("CodeSha256"), sha)
        client.update_function_code(
            FunctionName=spec.name, ZipFile=package, Publish=False, **_revision(current)
        )
        client.get_waiter("function_updated_v2").wait(FunctionName=spec.name)
        current = client.get_function_configuration(FunctionName=spec.name)
    differences = configuration_differences(current, spec)
    if differences:
        logger.info("Updating the configuration of %s: %s", spec.name, ", ".join(differences))
        client.update_function_configuration(
            FunctionName=spec.name, **spec.configuration(), **_revision(current)
        )
        client.get_waiter("function_updated_v2").wait(FunctionName=spec.name)
        current = client.get_function_configuration(FunctionName=spec.name)
    return current


def latest_published_version(client: Any, function_name: str) -> dict[str, Any] | None:
    """The configuration of the highest published version, or None when none is published."""
    latest: dict[str, Any] | None = None
    for page in client.get_paginator("list_versions_by_function").paginate(FunctionName=function_name):
        for version in page["Versions"]:
            if version["Version"] == "$LATEST":
                continue
            if latest is None or int(version["Version"]) > int(latest["Version"]):
                latest = version
    return latest


def publish_version(
    client: Any, spec: FunctionSpec, sha: str, checked: Mapping[str, Any] | None = None
) -> PublishedVersion:
    """Publish ``$LATEST`` as a version, unless the latest version already has this code and config.

    ``CodeSha256`` and the ``RevisionId`` of ``checked`` (``$LATEST``'s configuration as it was
    checked; read here when not given) make Lambda refuse to publish if ``$LATEST`` changed
    since (another writer), instead of publishing someone else's code or settings.
    """
    latest = latest_published_version(client, spec.name)
    if latest and latest.get("CodeSha256") == sha and not configuration_differences(latest, spec):
        arn = unqualified_arn(latest["FunctionArn"])
        logger.info("Version %s of %s already has this code and configuration", latest["Version"], spec.name)
        return PublishedVersion(arn, latest["Version"], f"{arn}:{latest['Version']}", sha, created=False)
    if checked is None:
        checked = client.get_function_configuration(FunctionName=spec.name)
    published = client.publish_version(
        FunctionName=spec.name, CodeSha256=sha, Description=spec.description, **_revision(checked)
    )
    if published.get("CodeSha256") != sha:
        raise RuntimeError(
            f"Lambda published version {published['Version']} of {spec.name} with CodeSha256 "
            f"{published.get('CodeSha256')}, expected {sha}: the function changed while publishing"
        )
    arn = unqualified_arn(published["FunctionArn"])
    version = published["Version"]
    logger.info("Published version %s of %s", version, spec.name)
    return PublishedVersion(arn, version, f"{arn}:{version}", sha, created=True)


def publish_inference_function(client: Any, spec: FunctionSpec, package: bytes) -> PublishedVersion:
    """Create or update the function, then publish (or reuse) the version holding ``package``."""
    checked = create_or_update_function(client, spec, package)
    return publish_version(client, spec, code_sha256(package), checked)
