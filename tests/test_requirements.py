"""requirements.txt is what a user uploads to MWAA 3.3.1 (requirements/mwaa/<version>.txt to 3.0.6 and
2.11.0): each must resolve under its MWAA version's constraints."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINT_URL = "https://raw.githubusercontent.com/apache/airflow/constraints-3.3.1/constraints-3.12.txt"
VERSIONS = {
    "3.3.1": ROOT / "requirements.txt",
    "3.0.6": ROOT / "requirements" / "mwaa" / "3.0.6.txt",
    "2.11.0": ROOT / "requirements" / "mwaa" / "2.11.0.txt",
}


def _lines(path: Path) -> list[str]:
    return [
        line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


@pytest.mark.parametrize(("version", "path"), VERSIONS.items(), ids=list(VERSIONS))
def test_first_line_is_the_mwaa_constraint(version, path):
    first = path.read_text().splitlines()[0]
    assert first == f'--constraint "{CONSTRAINT_URL.replace("3.3.1", version)}"'


def test_every_requirement_is_pinned():
    for path in VERSIONS.values():
        for line in _lines(path)[1:]:
            assert "==" in line, f"{path.relative_to(ROOT)}: {line!r} is not pinned"
    for name in ("airflow-dev.txt", "ml-tools.txt", "label-studio.txt"):
        for line in _lines(ROOT / "requirements" / name):
            assert "==" in line, f"requirements/{name}: {line!r} is not pinned"


@pytest.mark.parametrize(("airflow_version", "path"), VERSIONS.items(), ids=list(VERSIONS))
def test_nothing_overrides_an_mwaa_essential_pin(airflow_version, path):
    essential = {}
    for line in _lines(ROOT / "constraints" / f"mwaa-essential-{airflow_version}.txt"):
        name, _, version = line.partition("==")
        essential[name.lower()] = version
    for line in _lines(path)[1:]:
        name, _, version = line.partition("==")
        assert essential.get(name.lower(), version) == version, f"{name} overrides an MWAA essential pin"


@pytest.mark.network
@pytest.mark.parametrize(("airflow_version", "path"), VERSIONS.items(), ids=list(VERSIONS))
def test_requirements_resolve_under_mwaa_constraints_for_python_312(tmp_path, airflow_version, path):
    """A dry-run resolution for Python 3.12 against the constraints MWAA uses (PyPI needed)."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or str(ROOT / ".venv" / "bin" / "uv")
    assert Path(uv).exists(), "uv is installed in the project's environment by the Makefile"
    constraints = ROOT / "constraints" / f"airflow-{airflow_version}-py3.12.txt"
    reqs = tmp_path / "requirements.in"
    reqs.write_text("\n".join([f"apache-airflow=={airflow_version}", *_lines(path)[1:]]) + "\n")
    result = subprocess.run(
        [
            uv,
            "pip",
            "compile",
            str(reqs),
            "-c",
            str(constraints),
            "-c",
            str(ROOT / "constraints" / f"mwaa-essential-{airflow_version}.txt"),
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
