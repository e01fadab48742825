"""Run a command "on the device": in a user + mount namespace whose file system is the device's.

``unshare -rm`` (util-linux) gives the command its own mount namespace as uid 0 of a new user
namespace (no privilege on the host). Inside, ``enter.sh`` builds a root on a tmpfs: every top-level
folder of the host is bind-mounted as is, except the device's own (:data:`.device_root.DEVICE_DIRS`:
``/opt``, ``/tmp``, ``/home``, ``/greengrass``, ``/.simulator``), which come from the device root,
and the checkout itself (:data:`HOST_PATHS_KEPT`), at its own path wherever it is.
It then ``chroot``s there and runs the command in the given folder. The network is the host's
(127.0.0.1 reaches the emulator and the broker); processes are ordinary host processes.

Everything runs as uid 0 of the namespace (the host's user outside): the device's ``aws_cam`` has
passwordless ``sudo``, and the ``sudo`` shim runs its command as the same user.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from emulator.simulated_deeplens.device_root import BIN_DIR, DEVICE_DIRS, DEVICE_USER, HOME, DeviceRoot

REPO_ROOT = Path(__file__).resolve().parents[3]


def _interpreter_homes(venv: Path) -> tuple[Path, ...]:
    """Where the virtual environment's interpreter really lives (``pyvenv.cfg``'s ``home`` and the
    resolved executable's prefix), e.g. a pyenv or uv Python under ``/home`` or ``/opt``."""
    homes: list[Path] = []
    config = venv / "pyvenv.cfg"
    if config.is_file():
        for line in config.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                homes.append(Path(value.strip()).parent)
    executable = venv / "bin" / "python"
    if executable.exists():
        homes.append(executable.resolve().parent.parent)
    return tuple(dict.fromkeys(homes))


HOST_PATHS_KEPT: tuple[Path, ...] = (REPO_ROOT, *_interpreter_homes(REPO_ROOT / ".venv-ml"))
"""Host folders the device sees at their own path even under a device folder (``/tmp``, ``/opt``,
``/home``): the checkout, whose ``.venv-ml`` runs the function and whose ``include/`` holds the
stand-ins, and the folders its interpreter really lives in. Everything else under a device folder
is the device's own."""

DEVICE_PATH = f"{BIN_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

ENTER_SCRIPT = r"""#!/bin/sh
# enter.sh DEVICE_ROOT CWD -- COMMAND...: run COMMAND in CWD with the device's file system as /.
# Runs as uid 0 of a fresh user + mount namespace (unshare -rm); the mounts vanish with it.
set -eu
root=$1
cwd=$2
shift 3
device_dirs="@DEVICE_DIRS@"
new=$root/.simulator/rootfs
mount -t tmpfs -o mode=755 deeplens-root "$new"
for entry in /*; do
    name=${entry#/}
    case " $device_dirs " in *" $name "*) continue ;; esac
    if [ -L "$entry" ]; then
        ln -s "$(readlink "$entry")" "$new/$name"
    elif [ -d "$entry" ]; then
        mkdir "$new/$name"
        mount --rbind "$entry" "$new/$name" 2>/dev/null || echo "enter.sh: cannot mount $entry" >&2
    fi
done
for name in $device_dirs; do
    mkdir -p "$new/$name"
    mount --bind "$root/$name" "$new/$name"
done
# Host folders the device must still see where a device folder covers them (e.g. a checkout under
# /tmp: the launcher runs its .venv-ml python, and the stand-ins live in its include/).
for keep in @KEEP@; do
    case "$keep" in /*) ;; *) continue ;; esac
    first=${keep#/}
    first=${first%%/*}
    case " $device_dirs " in *" $first "*) ;; *) continue ;; esac
    [ -d "$keep" ] || continue
    mkdir -p "$new$keep"
    mount --rbind "$keep" "$new$keep"
done
exec chroot "$new" /bin/sh -c 'cd "$0" && exec "$@"' "$cwd" "$@"
"""


@functools.cache
def namespace_unavailable() -> str | None:
    """Why device commands cannot run here (a reason to skip on), or None when they can."""
    for tool in ("unshare", "mount", "chroot"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"`{tool}` is not installed"
    try:
        probe = subprocess.run(
            [
                _tool("unshare"),
                "-rm",
                "sh",
                "-c",
                "mount -t tmpfs none /mnt 2>&1 || mount -t tmpfs none /tmp",
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"`unshare -rm` cannot run: {err}"
    if probe.returncode != 0:
        detail = (probe.stderr or probe.stdout).strip()
        return f"`unshare -rm` (user + mount namespace) is refused here: {detail}"
    return None


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def device_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of ``aws_cam``'s commands on the device, plus ``extra``."""
    env = {
        "PATH": DEVICE_PATH,
        "HOME": HOME,
        "USER": DEVICE_USER,
        "LOGNAME": DEVICE_USER,
        "SHELL": "/bin/bash",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    env.update(extra or {})
    return env


class DeviceShell:
    """Runs commands on the device whose file system is ``root``."""

    def __init__(self, root: DeviceRoot, base_env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.base_env = dict(base_env or {})
        self._enter = root.path / ".simulator" / "enter.sh"
        self._enter.parent.mkdir(parents=True, exist_ok=True)
        keep = " ".join(shlex.quote(str(path)) for path in HOST_PATHS_KEPT) or "''"
        self._enter.write_text(
            ENTER_SCRIPT.replace("@DEVICE_DIRS@", " ".join(DEVICE_DIRS)).replace("@KEEP@", keep)
        )

    def argv(self, command: Sequence[str], cwd: str = HOME) -> list[str]:
        """The host argv running ``command`` (argv, no shell) in the device folder ``cwd``."""
        if not command:
            raise ValueError("no command to run on the device")
        return [
            _tool("unshare"),
            "-rm",
            "/bin/sh",
            str(self._enter),
            str(self.root.path),
            cwd,
            "--",
            *command,
        ]

    def environment(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The device environment with the shell's base variables and ``env``."""
        return device_environment({**self.base_env, **(env or {})})

    def popen(
        self, command: Sequence[str], cwd: str = HOME, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen:
        """Start ``command`` on the device (``subprocess.Popen`` keyword arguments pass through)."""
        return subprocess.Popen(self.argv(command, cwd), env=self.environment(env), **kwargs)

    def run(
        self,
        command: Sequence[str],
        cwd: str = HOME,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 120.0,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess:
        """Run ``command`` on the device to its end; output captured as text unless told otherwise."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(
            self.argv(command, cwd), env=self.environment(env), timeout=timeout, check=False, **kwargs
        )

    def shell(self, script: str, **kwargs: Any) -> subprocess.CompletedProcess:
        """Run a ``sh -c`` script on the device."""
        return self.run(["/bin/sh", "-c", script], **kwargs)
