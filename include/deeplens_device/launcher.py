"""The simulated DeepLens's ``python3.7``: the interpreter its Greengrass core and SSH deploys call.

``write_device_python(bin_dir)`` writes an executable ``bin_dir/python3.7`` (a POSIX shell script)
that runs the ML tools environment's Python (``.venv-ml/bin/python`` of this repository, absolute
path) with the ``awscam``/``mo`` stand-ins first on ``PYTHONPATH``, so the inference function in
``include/lambda/`` runs unmodified. Put ``bin_dir`` first on the device processes' ``PATH``.

``python3.7 -m pip install ...`` is answered offline by ``deeplens_device.offline_pip`` (the
environment has no pip and the device no package index): requirements already installed are
"already satisfied", others fail with pip's message. The interpreter is really Python 3.11 (the
function's code is Python 3.7-compatible and is tested so); ``python3.7 --version`` says so.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from deeplens_device import STAND_INS_DIR

REPOSITORY = Path(__file__).resolve().parents[2]
ML_PYTHON = REPOSITORY / ".venv-ml" / "bin" / "python"
OFFLINE_PIP = Path(__file__).resolve().parent / "offline_pip.py"
DEVICE_PYTHON_NAME = "python3.7"

_SCRIPT = """#!/bin/sh
# The simulated DeepLens's python3.7 (written by deeplens_device.launcher): the ML tools
# environment's Python with the awscam/mo stand-ins first on PYTHONPATH.
PYTHONPATH={stand_ins}"${{PYTHONPATH:+:$PYTHONPATH}}"
export PYTHONPATH
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
    shift 2
    exec {python} {offline_pip} "$@"
fi
exec {python} "$@"
"""


def device_python_script(python: Path = ML_PYTHON) -> str:
    """The text of the ``python3.7`` script running ``python`` (an absolute path)."""
    return _SCRIPT.format(
        stand_ins=shlex.quote(str(STAND_INS_DIR)),
        python=shlex.quote(str(python)),
        offline_pip=shlex.quote(str(OFFLINE_PIP)),
    )


def write_device_python(bin_dir: Path, python: Path = ML_PYTHON) -> Path:
    """Write the executable ``bin_dir/python3.7``; its path. FileNotFoundError if ``python`` is missing."""
    if not Path(python).is_file():
        raise FileNotFoundError(f"{python}: the ML tools environment is not built (make ml-env)")
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / DEVICE_PYTHON_NAME
    path.write_text(device_python_script(Path(python)))
    path.chmod(0o755)
    return path
