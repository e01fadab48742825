"""Device shims other than ``systemctl``: ``sudo`` and the device's ``python3.7``.

``sudo``: the DeepLens's ``aws_cam`` has passwordless sudo, and device commands already run as
uid 0 of their namespace, so the shim checks its options as sudo does and runs the command.

``python3.7``: the interpreter the DeepLens's software provides. Another part of the project writes
the real launcher (``deeplens_device.launcher.write_device_python(bin_dir)``: Python of the ML tools
environment with the ``awscam``/``mo`` stand-ins); :func:`install_device_python` uses it when it is
importable and a given launcher otherwise, else a plain ``exec`` of an interpreter (``sys.executable``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

PythonLauncher = Callable[[Path], object]
"""Writes the device's ``python3.7`` into the given bin folder."""

SUDO = r"""#!/bin/sh
# sudo of the simulated DeepLens: aws_cam may run anything without a password.
while [ $# -gt 0 ]; do
    case "$1" in
        -n|-E|-H|-S|-k|--non-interactive|--preserve-env|--set-home) shift ;;
        -u|-g)
            [ $# -ge 2 ] || { echo "sudo: option requires an argument -- '${1#-}'" >&2; exit 1; }
            shift 2 ;;
        --) shift; break ;;
        -*) echo "sudo: invalid option -- '${1#-}'" >&2
            echo "usage: sudo [-AbEHknPS] [-u user] [-g group] command" >&2; exit 1 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: sudo [-AbEHknPS] [-u user] [-g group] command" >&2; exit 1; }
exec "$@"
"""

FALLBACK_PYTHON = """#!/bin/sh
# python3.7 of the simulated DeepLens (fallback launcher): the host interpreter below.
exec {interpreter} "$@"
"""


def write_sudo(bin_dir: Path) -> Path:
    """Write the ``sudo`` shim."""
    path = bin_dir / "sudo"
    path.write_text(SUDO)
    path.chmod(0o755)
    return path


def write_fallback_python(bin_dir: Path, interpreter: str = sys.executable) -> Path:
    """Write ``python3.7`` running ``interpreter`` (a host path the device's file system shows)."""
    path = bin_dir / "python3.7"
    path.write_text(FALLBACK_PYTHON.format(interpreter=interpreter))
    path.chmod(0o755)
    return path


def project_launcher() -> PythonLauncher | None:
    """``deeplens_device.launcher.write_device_python`` when that module exists, else None."""
    try:
        module = importlib.import_module("deeplens_device.launcher")
    except ImportError:
        return None
    return getattr(module, "write_device_python", None)


def install_device_python(bin_dir: Path, launcher: PythonLauncher | str | None = None) -> Path:
    """Write ``python3.7`` into ``bin_dir``.

    ``launcher``: a callable writing it, or an interpreter path for the fallback launcher; None uses
    the project's launcher when importable, else the fallback with ``sys.executable``.
    """
    if launcher is None:
        launcher = project_launcher() or sys.executable
    if isinstance(launcher, str):
        return write_fallback_python(bin_dir, launcher)
    launcher(bin_dir)
    path = bin_dir / "python3.7"
    if not path.exists():
        raise RuntimeError(f"the python launcher {launcher!r} wrote no {path}")
    return path
