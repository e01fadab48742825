"""The simulated device's ``python3.7``: stand-ins first on the path, ``-m pip install`` offline."""

from __future__ import annotations

import subprocess
from pathlib import Path

from deeplens_device import STAND_INS_DIR


def _run(python37: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python37), *args], capture_output=True, text=True, timeout=60, check=False)


def test_device_python_imports_the_stand_ins(device_python: Path) -> None:
    assert device_python.name == "python3.7" and device_python.stat().st_mode & 0o111
    result = _run(device_python, "-c", "import awscam, mo; print(awscam.__file__); print(mo.__file__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(STAND_INS_DIR / "awscam.py"), str(STAND_INS_DIR / "mo.py")]


def test_recipe_install_step_is_satisfied_offline(device_python: Path) -> None:
    """The Greengrass V2 recipe's ``python3.7 -m pip install --user 'awsiotsdk>=1.11,<2'``."""
    result = _run(device_python, "-m", "pip", "install", "--user", "awsiotsdk>=1.11,<2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Requirement already satisfied: awsiotsdk<2,>=1.11 in ")


def test_unsatisfiable_requirements_fail_as_pip_does(device_python: Path) -> None:
    for requirement in ("awsiotsdk>=2", "no-such-package-on-the-device"):
        result = _run(device_python, "-m", "pip", "install", "--user", requirement)
        assert result.returncode == 1
        assert f"No matching distribution found for {requirement}" in result.stderr
    assert _run(device_python, "-m", "pip", "uninstall", "awsiotsdk").returncode == 2
