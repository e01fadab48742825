"""The device's ``greengrassd`` unit: what ``systemctl restart greengrassd`` (re)starts.

A DeepLens runs its Greengrass V1 core as the systemd unit ``greengrassd``; restarting it restarts
the pinned inference function with whatever code and model are now on disk. The SSH deployer relies
on that (``sudo -n systemctl restart greengrassd``). Here the unit runs, through the supervisor, each
function found in the configured function folders (the SSH deployer's ``function_dir``) and in the
Greengrass V1 deployment's lambda folders (``/greengrass/ggc/deployment/lambda/*``): every folder
holding ``deeplens_inference.py``, run as ``python3.7 -u deeplens_inference.py`` in that folder
(the function runs its loop at import, as Greengrass V1 runs a pinned function).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence

from emulator.simulated_deeplens.device_root import GREENGRASS_V1_LAMBDA_DIR, GREENGRASS_V1_LOG_DIR
from emulator.simulated_deeplens.supervisor import FunctionSupervisor

UNIT = "greengrassd"
ENTRY_MODULE = "deeplens_inference.py"
DEFAULT_FUNCTION_DIRS = ("/opt/deeplens-pipeline/function",)
"""The SSH deployer's default ``function_dir`` (deeplens_pipeline.deploy.ssh.DEFAULT_FUNCTION_DIR)."""
_PREFIX = f"{UNIT}:"


class Greengrassd:
    """The ``greengrassd`` unit of the simulated device."""

    def __init__(
        self,
        supervisor: FunctionSupervisor,
        function_dirs: Sequence[str] = DEFAULT_FUNCTION_DIRS,
        env: Mapping[str, str] | None = None,
        python: str = "python3.7",
    ) -> None:
        self.supervisor = supervisor
        self.function_dirs = tuple(function_dirs)
        self.env = dict(env or {})
        self.python = python
        self.active = False

    def functions(self) -> list[str]:
        """Device folders holding a function to run (configured folders, then V1 lambda folders)."""
        root = self.supervisor.shell.root
        found = [d for d in self.function_dirs if (root.host_path(d) / ENTRY_MODULE).is_file()]
        lambdas = root.host_path(GREENGRASS_V1_LAMBDA_DIR)
        if lambdas.is_dir():
            for entry in sorted(lambdas.iterdir()):
                if (entry / ENTRY_MODULE).is_file():
                    found.append(posixpath.join(GREENGRASS_V1_LAMBDA_DIR, entry.name))
        return found

    def start(self) -> str:
        """Start every function found; what systemd would log."""
        self.active = True
        started = []
        for folder in self.functions():
            log_name = posixpath.basename(folder.rstrip("/")) or "function"
            self.supervisor.start(
                _PREFIX + folder,
                [self.python, "-u", ENTRY_MODULE],
                cwd=folder,
                log_file=f"{GREENGRASS_V1_LOG_DIR}/{log_name}.log",
                env=self.env,
            )
            started.append(folder)
        return f"greengrassd started {len(started)} function(s): {', '.join(started) or 'none'}"

    def stop(self) -> str:
        """Stop every function of the unit."""
        for name in self.supervisor.names(_PREFIX):
            self.supervisor.stop(name)
        self.active = False
        return "greengrassd stopped"

    def restart(self) -> str:
        """Stop, then start (reading the function folders again)."""
        self.stop()
        return self.start()

    def running(self) -> list[str]:
        """Function folders whose process runs."""
        return [n[len(_PREFIX) :] for n in self.supervisor.names(_PREFIX) if self.supervisor.is_running(n)]

    def status(self) -> tuple[bool, str]:
        """``(active, systemctl status text)``."""
        running = self.running()
        state = "active (running)" if self.active else "inactive (dead)"
        lines = [
            f"* {UNIT}.service - Greengrass daemon (simulated DeepLens)",
            f"   Active: {state}",
            *(f"           function {folder}" for folder in running),
        ]
        return self.active, "\n".join(lines)
