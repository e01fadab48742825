"""Package and publish the DeepLens inference function as a Lambda version (seed step 6).

The deployment zip holds the function's files and, at its root, the ``greengrasssdk`` package
(the Greengrass V1 Core SDK; AWS's V1 packaging guide: "The py file and greengrasssdk folder must
be in the root of the directory"). The SDK comes from the installed ``greengrasssdk`` distribution (pinned in
requirements.txt, so MWAA installs it too); its files are checked against the hashes its wheel
recorded, so every machine packs the same bytes. The zip is byte-for-byte deterministic (sorted
entries, fixed timestamps and modes, no compression), so unchanged code keeps its ``CodeSha256``
and publishing again returns the existing version instead of creating a new one.

The function is created with ``DEFAULT_RUNTIME`` (python3.13): Lambda refuses new python3.7
functions (and python3.8 from 2027-02-01), and the DeepLens's Greengrass V1 core runs it as Python 3.7 anyway
(the greengrass-v1 deployer writes ``FunctionRuntimeOverride``). The boto3 ``lambda`` client is
passed in.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
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
DEFAULT_RUNTIME = "python3.13"
"""Lambda's runtime for the function: accepted by CreateFunction, on Amazon Linux 2023, the latest
deprecation date of the Python runtimes (AWS's table: deprecated 2029-06-30, create blocked
2029-07-31, update blocked 2029-08-31), and one whose standard library still has everything the
function and greengrasssdk import (no module they use was removed by 3.13), so the Python 3.7-era
code runs unchanged. Lambda only stores the code: the DeepLens runs it with its own Python 3.7."""
DEVICE_RUNTIME = "python3.7"
"""The runtime the DeepLens's Greengrass V1 core runs the function with."""
REFUSED_RUNTIMES = frozenset({"python2.7", "python3.6", "python3.7", "python3.8"})
"""Python runtimes the pipeline will not create a function on: Lambda refuses 2.7, 3.6 and 3.7 today
and python3.8 (deprecated) from 2027-02-01 (AWS's runtime table)."""
SDK_DISTRIBUTION = "greengrasssdk"
SDK_VERSION = "1.6.1"
SDK_PACKAGE = "greengrasssdk"
"""The Greengrass V1 Core SDK: the package at the zip's root, from the pinned distribution."""
SDK_LICENSE_NAME = f"{SDK_PACKAGE}/LICENSE"
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


def _record_digest(data: bytes) -> str:
    """A file's hash as a wheel's RECORD writes it: urlsafe base64 of the SHA-256, unpadded."""
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def sdk_files(distribution: importlib.metadata.Distribution | None = None) -> list[tuple[str, bytes]]:
    """``(archive name, bytes)`` of the Greengrass V1 Core SDK, sorted: ``greengrasssdk/...`` and its licence.

    Read from the installed ``greengrasssdk`` distribution (``distribution`` overrides it),
    which must be version ``SDK_VERSION``. Every file must match the SHA-256 its RECORD holds (the
    wheel's own hashes), so a modified or different copy fails here instead of silently
    changing the package. Compiled files are left out. The licence (Apache-2.0) goes in as
    ``greengrasssdk/LICENSE``.
    """
    if distribution is None:
        try:
            distribution = importlib.metadata.distribution(SDK_DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            raise FileNotFoundError(
                f"{SDK_DISTRIBUTION}=={SDK_VERSION} is not installed: the inference function's zip "
                f"needs it at its root (install requirements.txt)"
            ) from None
    if distribution.version != SDK_VERSION:
        raise RuntimeError(
            f"{SDK_DISTRIBUTION} {distribution.version} is installed, the function is packaged with "
            f"{SDK_VERSION} (requirements.txt pins it): install {SDK_DISTRIBUTION}=={SDK_VERSION}"
        )
    licence_names = set(distribution.metadata.get_all("License-File") or ()) | {"LICENSE"}
    files: dict[str, bytes] = {}
    for record in distribution.files or ():
        parts = record.parts
        is_licence = len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] in licence_names
        in_package = parts[0] == SDK_PACKAGE and "__pycache__" not in parts
        if not (is_licence or (in_package and not record.name.endswith(_SKIPPED_SUFFIXES))):
            continue
        data = Path(distribution.locate_file(record)).read_bytes()
        if record.hash is None or record.hash.mode != "sha256" or record.hash.value != _record_digest(data):
            raise RuntimeError(
                f"{SDK_DISTRIBUTION} {SDK_VERSION}: {record} does not match the hash in its RECORD "
                "(a modified install): reinstall it"
            )
        files[SDK_LICENSE_NAME if is_licence else record.as_posix()] = data
    if f"{SDK_PACKAGE}/__init__.py" not in files:
        raise FileNotFoundError(
            f"{SDK_DISTRIBUTION} {SDK_VERSION} lists no {SDK_PACKAGE}/__init__.py: reinstall it"
        )
    if SDK_LICENSE_NAME not in files:
        raise FileNotFoundError(f"{SDK_DISTRIBUTION} {SDK_VERSION} has no licence file: reinstall it")
    return sorted(files.items())


def package_files(source_dir: Path | None = None) -> list[tuple[str, bytes]]:
    """``(archive name, bytes)`` of everything the zip holds, sorted: the function's files and the SDK."""
    source_dir = source_dir or locate_lambda_source()
    entries = [(name, path.read_bytes()) for name, path in source_files(source_dir)]
    own = {name.split("/", 1)[0] for name, _ in entries}
    if SDK_PACKAGE in own:
        raise ValueError(
            f"{source_dir} has its own {SDK_PACKAGE}: the zip's copy comes from the installed "
            f"{SDK_DISTRIBUTION}=={SDK_VERSION}; remove the folder"
        )
    return sorted(entries + sdk_files())


def build_deployment_zip(source_dir: Path | None = None) -> bytes:
    """The deployment package of the function, ``greengrasssdk`` at its root: same files, same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in package_files(source_dir):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
            info.create_system = 3  # Unix, whatever the building machine
            info.external_attr = ZIP_FILE_MODE << 16
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, data)
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

    ``runtime`` is the Lambda runtime the function is created with (``DEFAULT_RUNTIME``); the
    DeepLens runs it as ``DEVICE_RUNTIME`` whatever it is. ``environment`` holds the inference
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
        if self.runtime in REFUSED_RUNTIMES:
            raise ValueError(
                f"runtime {self.runtime!r}: Lambda refuses (or, deprecated, will soon refuse) to create "
                f"or update functions on it; use "
                f"{DEFAULT_RUNTIME!r} (the DeepLens still runs the function as {DEVICE_RUNTIME}: the "
                "greengrass-v1 deployment sets FunctionRuntimeOverride)"
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
    # Configuration first: a function still on a runtime Lambda blocks for updates (an older
    # deployment's python3.7) can only move off it by UpdateFunctionConfiguration; its code update
    # would be refused.
    differences = configuration_differences(current, spec)
    if differences:
        logger.info("Updating the configuration of %s: %s", spec.name, ", ".join(differences))
        client.update_function_configuration(
            FunctionName=spec.name, **spec.configuration(), **_revision(current)
        )
        client.get_waiter("function_updated_v2").wait(FunctionName=spec.name)
        current = client.get_function_configuration(FunctionName=spec.name)
    if current.get("CodeSha256") != sha:
        logger.info("Updating the code of %s (%s -> %s)", spec.name, current.get("CodeSha256"), sha)
        client.update_function_code(
            FunctionName=spec.name, ZipFile=package, Publish=False, **_revision(current)
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
