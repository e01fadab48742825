"""``systemctl`` on the simulated device: the shim on the device's PATH and the host side it calls.

The shim (a small Python script run by the host's interpreter, which the device's file system
shows at the same path) sends its verb and unit over TCP on 127.0.0.1 with a per-device token to
:class:`SystemctlServer`, which acts on the device's units (only ``greengrassd``) and answers the
exit code and output. Unknown units and verbs fail with systemd's own messages and exit codes
(``systemctl`` exits 5 for a unit that is not found on start/stop/restart, 4 for ``status`` of one,
3 for an inactive unit's ``status``/``is-active``, 1 for an unknown verb).
"""

from __future__ import annotations

import json
import logging
import secrets
import socketserver
import sys
import threading
from pathlib import Path
from typing import Any

from emulator.simulated_deeplens.greengrassd import UNIT, Greengrassd

log = logging.getLogger("emulator.simulated_deeplens")

SHIM = r'''#!@PYTHON@ -IS
"""systemctl of the simulated DeepLens: forwards to the simulator (units: greengrassd)."""
import json, socket, sys
args = [a for a in sys.argv[1:] if not a.startswith("-")]
request = {"token": "@TOKEN@", "args": args}
try:
    with socket.create_connection(("127.0.0.1", @PORT@), timeout=120) as conn:
        conn.sendall(json.dumps(request).encode() + b"\n")
        answer = json.loads(conn.makefile("rb").readline())
except OSError as err:
    sys.stderr.write("System has not been booted with systemd as init system (PID 1). Can't operate.\n")
    sys.stderr.write("Failed to connect to bus: %s\n" % err)
    sys.exit(1)
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(int(answer.get("rc", 1)))
'''


def _unit(name: str) -> str:
    return name[: -len(".service")] if name.endswith(".service") else name


def systemctl(units: dict[str, Greengrassd], args: list[str]) -> dict[str, Any]:
    """What ``systemctl <args>`` answers on the device: ``{"rc", "stdout", "stderr"}``."""
    if not args:
        return {"rc": 1, "stdout": "", "stderr": "Too few arguments.\n"}
    verb, names = args[0], [_unit(n) for n in args[1:]]
    if verb not in ("start", "stop", "restart", "status", "is-active"):
        return {"rc": 1, "stdout": "", "stderr": f"Unknown command verb {verb}.\n"}
    if not names:
        return {"rc": 1, "stdout": "", "stderr": "Too few arguments.\n"}
    out, rc = [], 0
    for name in names:
        unit = units.get(name)
        if unit is None:
            if verb in ("status",):
                return {"rc": 4, "stdout": "", "stderr": f"Unit {name}.service could not be found.\n"}
            if verb == "is-active":
                return {"rc": 3, "stdout": "inactive\n", "stderr": ""}
            return {
                "rc": 5,
                "stdout": "",
                "stderr": f"Failed to {verb} {name}.service: Unit {name}.service not found.\n",
            }
        if verb in ("start", "restart"):
            log.info("systemctl %s %s: %s", verb, name, unit.restart() if verb == "restart" else unit.start())
        elif verb == "stop":
            unit.stop()
        else:
            active, text = unit.status()
            out.append(text + "\n" if verb == "status" else ("active\n" if active else "inactive\n"))
            rc = rc or (0 if active else 3)
    return {"rc": rc, "stdout": "".join(out), "stderr": ""}


class SystemctlServer:
    """Answers the device's ``systemctl`` shim on 127.0.0.1 (an ephemeral port)."""

    def __init__(self, greengrassd: Greengrassd) -> None:
        self.units = {UNIT: greengrassd}
        self.token = secrets.token_hex(16)
        units, token = self.units, self.token

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    request = json.loads(self.rfile.readline())
                except ValueError:
                    return
                if request.get("token") != token:
                    answer = {"rc": 1, "stdout": "", "stderr": "Access denied\n"}
                else:
                    try:
                        answer = systemctl(units, [str(a) for a in request.get("args", [])])
                    except Exception as err:  # a unit that failed to start: systemd says so, exit 1
                        log.exception("systemctl %s failed", request.get("args"))
                        answer = {"rc": 1, "stdout": "", "stderr": f"Job failed: {err}\n"}
                self.wfile.write(json.dumps(answer).encode() + b"\n")

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="device-systemctl", daemon=True
        )

    def start(self) -> SystemctlServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def write_shim(self, bin_dir: Path, python: str = sys.executable) -> Path:
        """Write the ``systemctl`` shim into ``bin_dir`` (its interpreter: ``python``, a host path)."""
        shim = bin_dir / "systemctl"
        text = (
            SHIM.replace("@PYTHON@", python).replace("@TOKEN@", self.token).replace("@PORT@", str(self.port))
        )
        shim.write_text(text)
        shim.chmod(0o755)
        return shim
