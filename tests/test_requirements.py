"""requirements.txt is what a user uploads to MWAA 3.3.1: it must resolve under MWAA's constraints."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINT_URL = "https://raw.githubusercontent.com/apache/airflow/constraints-3.3.1/constraints-3.12.txt"


def _lines(path: Path) -> list[str]:
    return [
        line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


def test_first_line_is_the_mwaa_constraint():
    first = (ROOT / "requirements.txt").read_text().splitlines()[0]
    assert first == f'--constraint "{CONSTRAINT_URL}"'


def test_every_requirement_is_pinned():
    for line in _lines(ROOT / "requirements.txt")[1:]:
        assert "==" in line, f"requirements.txt: {line!r} is not pinned"
    for name in ("airflow-dev.txt", "ml-tools.txt", "label-studio.txt"):
        for line in _lines(ROOT / "requirements" / name):
            assert "==" in line, f"requirements/{name}: {line!r} is not pinned"


def test_nothing_overrides_an_mwaa_essential_pin():
    essential = {}
    for line in _lines(ROOT / "constraints" / "mwaa-essential-3.3.1.txt"):
        name, _, version = line.partition("==")
        essential[name.lower()] = version
    for line in _lines(ROOT / "requirements.txt")[1:]:
        name, _, version = line.partition("==")
        assert essential.get(name.lower(), version) == version, f"{name} overrides an MWAA essential pin"


@pytest.mark.network
def test_requirements_resolve_under_mwaa_constraints_for_python_312(tmp_path):
    """A dry-run resolution for Python 3.12 against the constraints MWAA uses (PyPI needed)."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    assert uv, "uv is installed in the project's environment by the Makefile"
    constraints = ROOT / "constraints" / "airflow-3.3.1-py3.12.txt"
    reqs = tmp_path / "requirements.in"
    reqs.write_text("\n".join(["apache-airflow==3.3.1", *_lines(ROOT / "requirements.txt")[1:]]) + "\n")
    result = subprocess.run(
        [
            uv,
            "pip",
            "compile",
            str(reqs),
            "-c",
            str(constraints),
            "-c",
            str(ROOT / "constraints" / "mwaa-essential-3.3.1.txt"),
            "--python-version",
            "3.12",
            "--python-platform",
            "x86_64-manylinux_2_28",
            "--quiet",
            "--no-header",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    resolved = result.stdout
    assert "pillow==12.3.0" in resolved
    for line in _lines(constraints):
        name, _, version = line.partition("==")
        for out in resolved.splitlines():
            if out.lower().startswith(f"{name.lower()}=="):
                assert out.split("==")[1].split()[0] == version, f"{name} resolved off-constraint: {out}"
