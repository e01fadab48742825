"""``SimulatedDeepLens``: one simulated device, its file system, SSH server, units and Greengrass core.

Usage::

    with SimulatedDeepLens(tmp / "device", client_public_key=pub, emulator_url=url, region=region,
                           thing_name=thing) as device:
        target = SshTarget(host="127.0.0.1", port=device.ssh_port, key_file=str(private_key),
                           known_hosts_file=str(device.known_hosts_path))
        ...                                     # SshDeployer(target, s3).deploy(request)
        device.host_path("/opt/awscam/artifacts")

Knobs (all optional but ``root``):

- ``client_public_key``: the key the SSH server accepts for ``aws_cam`` (OpenSSH public key text or
  a ``.pub`` path); without it no SSH server starts. ``ssh_port``: 0 picks a free one.
  ``known_hosts_path``: where the server's ``known_hosts`` line is written (default
  ``<root>.known_hosts``, beside the device root: a host file, not the device's).
- ``thing_name``, ``region``: the device's IoT identity (``AWS_IOT_THING_NAME`` of its functions).
- ``environment``: ``() -> dict`` merged into every function's environment at each (re)start (for
  instance the Greengrass IPC variables). Paths in it must be device paths (:meth:`host_path` maps
  them); the host's ``/tmp`` is not the device's.
- ``component_environment``: ``(component, configuration) -> dict`` for each Greengrass V2
  component (register it with the IPC server, return its SVCUID and socket).
- ``python_launcher``: writes ``python3.7`` into the device's bin folder (a callable taking that
  folder), or an interpreter path; default ``deeplens_device.launcher.write_device_python`` when
  importable, else ``sys.executable``.
- ``function_dirs``: where ``systemctl restart greengrassd`` finds the function besides the
  Greengrass V1 lambda folders (default the SSH deployer's ``/opt/deeplens-pipeline/function``).
- ``emulator_url`` (+ ``account_id``, ``role_alias``): start a Greengrass V2 core that registers
  ``thing_name`` (it must exist as an IoT thing) and applies its deployments.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from emulator.simulated_deeplens.device_root import DeviceRoot
from emulator.simulated_deeplens.greengrass_core import (
    DEFAULT_ROLE_ALIAS,
    ComponentEnvironment,
    GreengrassCore,
)
from emulator.simulated_deeplens.greengrassd import DEFAULT_FUNCTION_DIRS, Greengrassd
from emulator.simulated_deeplens.namespace import DeviceShell, namespace_unavailable
from emulator.simulated_deeplens.shims import PythonLauncher, install_device_python, write_sudo
from emulator.simulated_deeplens.ssh_server import DeviceSshServer
from emulator.simulated_deeplens.supervisor import EnvironmentProvider, FunctionSupervisor
from emulator.simulated_deeplens.systemctl import SystemctlServer


class SimulatedDeepLens:
    """A simulated DeepLens rooted at the host folder ``root`` (a context manager)."""

    def __init__(
        self,
        root: Path,
        *,
        thing_name: str = "deeplens_simulated",
        region: str = "us-east-1",
        client_public_key: str | Path | None = None,
        ssh_port: int = 0,
        known_hosts_path: Path | None = None,
        environment: EnvironmentProvider | None = None,
        component_environment: ComponentEnvironment | None = None,
        python_launcher: PythonLauncher | str | None = None,
        function_dirs: Sequence[str] = DEFAULT_FUNCTION_DIRS,
        emulator_url: str | None = None,
        account_id: str | None = None,
        role_alias: str = DEFAULT_ROLE_ALIAS,
    ) -> None:
        self.root = DeviceRoot(Path(root))
        self.thing_name, self.region = thing_name, region
        self.client_public_key = client_public_key
        self.ssh_port = ssh_port
        self.known_hosts_path = known_hosts_path or Path(f"{root}.known_hosts")
        self.python_launcher = python_launcher
        self.emulator_url, self.account_id, self.role_alias = emulator_url, account_id, role_alias
        self.component_environment = component_environment
        identity = {"AWS_IOT_THING_NAME": thing_name, "AWS_REGION": region, "AWS_DEFAULT_REGION": region}
        self.shell: DeviceShell | None = None
        self._base_env = identity
        self._environment = environment
        self._function_dirs = tuple(function_dirs)
        self.supervisor: FunctionSupervisor | None = None
        self.greengrassd: Greengrassd | None = None
        self.systemctl: SystemctlServer | None = None
        self.ssh: DeviceSshServer | None = None
        self.core: GreengrassCore | None = None

    def start(self) -> SimulatedDeepLens:
        """Lay out the file system, write the shims, start the units, SSH server and core."""
        reason = namespace_unavailable()
        if reason:
            raise RuntimeError(f"the simulated DeepLens cannot run here: {reason}")
        self.root.create()
        self.shell = DeviceShell(self.root, self._base_env)
        self.supervisor = FunctionSupervisor(self.shell, self._environment)
        self.greengrassd = Greengrassd(self.supervisor, self._function_dirs, env=self._base_env)
        self.systemctl = SystemctlServer(self.greengrassd).start()
        self.systemctl.write_shim(self.root.bin_dir)
        write_sudo(self.root.bin_dir)
        install_device_python(self.root.bin_dir, self.python_launcher)
        if self.client_public_key is not None:
            self.ssh = DeviceSshServer(self.shell, self.client_public_key, port=self.ssh_port)
            self.ssh_port = self.ssh.start()
            self.known_hosts_path.write_text(self.ssh.known_hosts_line())
        if self.emulator_url:
            self.core = GreengrassCore(
                self.supervisor,
                endpoint_url=self.emulator_url,
                region=self.region,
                thing_name=self.thing_name,
                account_id=self.account_id,
                role_alias=self.role_alias,
                component_environment=self.component_environment,
            ).start()
        return self

    def stop(self) -> None:
        """Stop the core, the SSH server, every function and the units."""
        if self.core:
            self.core.stop()
        if self.ssh:
            self.ssh.stop()
        if self.supervisor:
            self.supervisor.stop_all()
        if self.systemctl:
            self.systemctl.stop()

    def host_path(self, device_path: str) -> Path:
        """The host path of a device path in the device's own folders."""
        return self.root.host_path(device_path)

    def run(self, command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        """Run a command on the device (:meth:`.namespace.DeviceShell.run`)."""
        if self.shell is None:
            raise RuntimeError("start the device first")
        return self.shell.run(command, **kwargs)

    def __enter__(self) -> SimulatedDeepLens:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
