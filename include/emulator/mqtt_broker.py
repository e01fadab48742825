"""A real MQTT broker for the simulated device: Debian's mosquitto, started as a subprocess.

It plays AWS IoT Core's message broker for the emulator: what the device's function publishes
(through the Greengrass IPC servers in ``emulator.greengrass_ipc``) arrives here, and the watch
command (``deeplens_pipeline.device_watch``) subscribes here with plain MQTT. The broker listens
on 127.0.0.1 only, on a free port, keeps nothing on disk and allows anonymous clients (AWS IoT
Core's authentication is not emulated: the Greengrass IPC servers are where the device's
permissions are checked).

    with MqttBroker() as broker:
        print(broker.host, broker.port)
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

DEFAULT_BINARY = "/usr/sbin/mosquitto"
HOST = "127.0.0.1"
_START_ATTEMPTS = 5


class BrokerUnavailable(RuntimeError):
    """The mosquitto binary is missing or the broker did not start."""


def mosquitto_binary(binary: str | None = None) -> str:
    """The mosquitto executable to run: ``binary``, else /usr/sbin/mosquitto, else one on PATH.

    Raises BrokerUnavailable naming the binary and how to install it when none exists.
    """
    candidates = [binary] if binary else [DEFAULT_BINARY, shutil.which("mosquitto")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise BrokerUnavailable(
        f"the MQTT broker binary {binary or DEFAULT_BINARY} does not exist: install Debian's mosquitto "
        "(sudo apt-get install mosquitto)"
    )


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def broker_config(port: int, host: str = HOST) -> str:
    """mosquitto.conf text: one listener on ``host:port``, anonymous clients, no persistence."""
    return "\n".join(
        [
            f"listener {port} {host}",
            "allow_anonymous true",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "",
        ]
    )


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class MqttBroker:
    """mosquitto on ``host:port`` (127.0.0.1 and a free port), until ``stop()``; a context manager."""

    def __init__(self, binary: str | None = None, startup_timeout: float = 10.0) -> None:
        self.binary = mosquitto_binary(binary)
        self.host = HOST
        self.port = 0
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def log_path(self) -> Path:
        """The broker's log (stderr) file, in its temporary folder."""
        if self._workdir is None:
            raise RuntimeError("the broker is not started")
        return Path(self._workdir.name) / "mosquitto.log"

    def start(self) -> MqttBroker:
        """Start mosquitto and wait until it accepts connections (retrying if the port was taken)."""
        if self._process is not None:
            return self
        self._workdir = tempfile.TemporaryDirectory(prefix="mosquitto-")
        problem = ""
        for _ in range(_START_ATTEMPTS):
            self.port = free_port(self.host)
            config = Path(self._workdir.name) / "mosquitto.conf"
            config.write_text(broker_config(self.port, self.host))
            with open(self.log_path, "ab") as log:
                self._process = subprocess.Popen(
                    [self.binary, "-c", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._workdir.name,
                )
            problem = self._wait_ready()
            if not problem:
                return self
            self._terminate()
        self._cleanup()
        raise BrokerUnavailable(f"{self.binary} did not start: {problem}")

    def _wait_ready(self) -> str:
        """'' once the broker accepts connections, else why it did not."""
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return f"exited with {self._process.returncode}: {self.log_path.read_text(errors='replace')}"
            if _accepts(self.host, self.port):
                return ""
            time.sleep(0.05)
        return f"not accepting connections on {self.host}:{self.port} after {self.startup_timeout:g}s"

    def _terminate(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        self._process = None

    def _cleanup(self) -> None:
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop the broker and remove its temporary folder."""
        self._terminate()
        self._cleanup()

    def __enter__(self) -> MqttBroker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
