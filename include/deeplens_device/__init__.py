"""A simulated AWS DeepLens: stand-ins for the device-only libraries and the interpreter the device runs.

``stand_ins/`` holds modules named exactly ``awscam`` and ``mo`` (built on MXNet, CPU), put first on
the inference function's ``PYTHONPATH`` by ``deeplens_device.launcher.write_device_python``. The
function in ``include/lambda/`` runs on them unmodified.
"""

from __future__ import annotations

from pathlib import Path

STAND_INS_DIR = Path(__file__).resolve().parent / "stand_ins"
"""The folder holding the ``awscam`` and ``mo`` stand-ins (goes first on the function's PYTHONPATH)."""
