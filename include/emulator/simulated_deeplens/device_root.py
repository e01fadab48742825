"""The simulated DeepLens's file system: a host folder laid out like the device's own folders.

Only the device's own top-level folders live here (:data:`DEVICE_DIRS`); every other path of the
device (``/usr``, ``/etc``, ``/work``...) is the host's, read through the mount namespace of
:mod:`.namespace`. A path outside :data:`DEVICE_DIRS` has no place in the device root, so code that
hands paths to the device (frames, sockets, configuration) must put them under one of these.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

DEVICE_DIRS = ("opt", "tmp", "home", "greengrass", ".simulator")
"""Top-level folders the device owns: mounted over the host's in each device command's namespace."""

DEVICE_USER = "aws_cam"
HOME = f"/home/{DEVICE_USER}"
ARTIFACTS_DIR = "/opt/awscam/artifacts"
GREENGRASS_V1_LAMBDA_DIR = "/greengrass/ggc/deployment/lambda"
GREENGRASS_V1_LOG_DIR = "/greengrass/ggc/var/log/user"
GREENGRASS_V2_ROOT = "/greengrass/v2"
SIMULATOR_DIR = "/.simulator"
BIN_DIR = f"{SIMULATOR_DIR}/bin"
"""Device shims (``sudo``, ``systemctl``, ``python3.7``): first on the device's PATH."""

_LAYOUT = (
    ARTIFACTS_DIR,
    HOME,
    "/tmp",
    GREENGRASS_V1_LAMBDA_DIR,
    GREENGRASS_V1_LOG_DIR,
    f"{GREENGRASS_V2_ROOT}/packages/artifacts",
    f"{GREENGRASS_V2_ROOT}/packages/artifacts-unarchived",
    f"{GREENGRASS_V2_ROOT}/work",
    f"{GREENGRASS_V2_ROOT}/logs",
    BIN_DIR,
    f"{SIMULATOR_DIR}/rootfs",
)


@dataclass(frozen=True)
class DeviceRoot:
    """A device file system rooted at the host folder ``path``."""

    path: Path

    def create(self) -> DeviceRoot:
        """Create the DeepLens layout (idempotent); ``/tmp`` is world-writable and sticky as on Ubuntu."""
        for device_path in _LAYOUT:
            self.host_path(device_path).mkdir(parents=True, exist_ok=True)
        self.host_path("/tmp").chmod(0o1777)
        return self

    def host_path(self, device_path: str) -> Path:
        """The host path of ``device_path``; ValueError when the device root does not hold it."""
        if not device_path.startswith("/"):
            raise ValueError(f"device path {device_path!r} must be absolute")
        normal = posixpath.normpath(device_path)
        top = normal.lstrip("/").split("/", 1)[0]
        if top not in DEVICE_DIRS:
            raise ValueError(
                f"{device_path!r} is not in the device root (only {', '.join('/' + d for d in DEVICE_DIRS)} "
                "are the device's own; the rest is the host's)"
            )
        return self.path / normal.lstrip("/")

    def device_path(self, host_path: Path) -> str:
        """The device path of a host path inside the device root; ValueError otherwise."""
        relative = Path(host_path).resolve().relative_to(self.path.resolve())
        device = "/" + relative.as_posix()
        self.host_path(device)
        return device

    @property
    def bin_dir(self) -> Path:
        """Host path of the shims folder (device ``/.simulator/bin``)."""
        return self.host_path(BIN_DIR)
