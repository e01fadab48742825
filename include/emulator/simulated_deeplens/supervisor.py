"""The device's process supervisor: long-running functions started, stopped and restarted by name.

Each service is a device command (:class:`.namespace.DeviceShell`) in its own process group, its
stdout and stderr appended to a log file in the device root. The environment of every start is the
service's own plus what ``environment()`` returns at that moment (the Greengrass IPC variables of
another part, for instance), so a restart picks up a changed environment.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from emulator.simulated_deeplens.namespace import DeviceShell

log = logging.getLogger("emulator.simulated_deeplens")

EnvironmentProvider = Callable[[], dict[str, str]]


@dataclass
class Service:
    """A long-running device command."""

    name: str
    command: tuple[str, ...]
    cwd: str
    log_file: str
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None


class FunctionSupervisor:
    """Starts and stops the device's long-running functions."""

    def __init__(self, shell: DeviceShell, environment: EnvironmentProvider | None = None) -> None:
        self.shell = shell
        self.environment = environment
        self._services: dict[str, Service] = {}
        self._lock = threading.RLock()

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        cwd: str,
        log_file: str,
        env: Mapping[str, str] | None = None,
    ) -> Service:
        """(Re)start ``name`` running ``command`` in the device folder ``cwd``; log to device ``log_file``."""
        with self._lock:
            self.stop(name)
            service = Service(name, tuple(command), cwd, log_file, dict(env or {}))
            host_log = self.shell.root.host_path(log_file)
            host_log.parent.mkdir(parents=True, exist_ok=True)
            environment = {**(self.environment() if self.environment else {}), **service.env}
            with host_log.open("ab") as out:
                service.process = self.shell.popen(
                    service.command,
                    cwd=cwd,
                    env=environment,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._services[name] = service
            log.info("device service %s started (pid %s): %s", name, service.process.pid, command)
            return service

    def stop(self, name: str, timeout: float = 5.0) -> int | None:
        """Stop ``name`` (SIGTERM to its process group, SIGKILL after ``timeout``); its exit code."""
        with self._lock:
            service = self._services.pop(name, None)
        if service is None or service.process is None:
            return None
        process = service.process
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout)
        _signal_group(process, signal.SIGKILL)  # children left behind by the main process
        log.info("device service %s stopped (exit %s)", name, process.returncode)
        return process.returncode

    def restart(self, name: str) -> Service:
        """Start ``name`` again with its last command."""
        with self._lock:
            service = self._services.get(name)
            if service is None:
                raise KeyError(f"no device service {name!r} to restart")
            return self.start(
                name, service.command, cwd=service.cwd, log_file=service.log_file, env=service.env
            )

    def is_running(self, name: str) -> bool:
        """True while ``name``'s process runs."""
        service = self._services.get(name)
        return bool(service and service.process and service.process.poll() is None)

    def returncode(self, name: str) -> int | None:
        """``name``'s exit code, None while it runs or when it is unknown."""
        service = self._services.get(name)
        return service.process.poll() if service and service.process else None

    def names(self, prefix: str = "") -> list[str]:
        """The services whose name starts with ``prefix``."""
        with self._lock:
            return sorted(n for n in self._services if n.startswith(prefix))

    def stop_all(self) -> None:
        """Stop every service."""
        for name in self.names():
            self.stop(name)


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
