import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("build_mwaa_bundle", ROOT / "scripts" / "build_mwaa_bundle.py")
bundle = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bundle)


def test_bundle_is_complete_reproducible_and_importable_from_the_zip(tmp_path):
    out = bundle.build(tmp_path / "a")
    names = zipfile.ZipFile(out / "plugins.zip").namelist()
    assert "deeplens_pipeline/operators/labeling.py" in names
    assert "model_fix/__init__.py" in names
    assert ".airflowignore" in names  # the plugin manager must not execute the package's modules
    assert any(n.startswith("deeplens_pipeline/lambda_src/") for n in names)
    assert not any("__pycache__" in n for n in names)
    assert (out / "dags" / "deeplens_object_detection.py").exists()
    assert (out / "requirements.txt").read_text().startswith("--constraint")
    again = bundle.build(tmp_path / "b")
    digest = [hashlib.sha256((d / "plugins.zip").read_bytes()).hexdigest() for d in (out, again)]
    assert digest[0] == digest[1]
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import deeplens_pipeline.groundtruth, model_fix; "
        "print(deeplens_pipeline.groundtruth.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(out / "plugins.zip")],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert "plugins.zip" in result.stdout


LAYOUT_PROBE = """
import json, sys
from pathlib import Path

import airflow  # as on MWAA: Airflow puts its plugins and DAGs folders on sys.path itself
from airflow.models import DagBag

bag = DagBag(sys.argv[1])
import deeplens_pipeline, model_fix

print(json.dumps({
    "errors": {k: str(v)[-2000:] for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dags),
    "tasks": len(bag.dags["deeplens_object_detection"].tasks) if bag.dags else 0,
    "deeplens_pipeline": deeplens_pipeline.__file__,
    "model_fix": model_fix.__file__,
    "path": sys.path,
}))
"""


def test_the_bundle_parses_as_mwaa_lays_it_out(tmp_path):
    """plugins.zip unpacked into an empty plugins folder, the DAG alone in an empty DAGs folder, and
    nothing of the repository on the path: the DAG imports, with every task, from those folders.

    Run in each Airflow environment (3.3.1 by ``make test``; 3.0.6 and 2.11.0 by ``make
    test-mwaa-<version>``), each installed from that version's requirements file and constraints.
    """
    import airflow

    version = airflow.__version__
    if version not in bundle.REQUIREMENTS:
        pytest.skip(f"Airflow {version} is not an MWAA version the bundles are built for")
    out = bundle.build(tmp_path / "bundle", version)
    assert (out / "requirements.txt").read_text() == bundle.REQUIREMENTS[version].read_text()
    home = tmp_path / "airflow"
    dags, plugins = home / "dags", home / "plugins"
    dags.mkdir(parents=True)
    plugins.mkdir()
    shutil.copytree(out / "dags", dags, dirs_exist_ok=True)
    with zipfile.ZipFile(out / "plugins.zip") as archive:
        archive.extractall(plugins)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    result = subprocess.run(
        [sys.executable, "-I", "-c", LAYOUT_PROBE, str(dags)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    assert found["dags"] == ["deeplens_object_detection"] and found["tasks"] > 10
    assert found["deeplens_pipeline"].startswith(str(plugins))
    assert found["model_fix"].startswith(str(plugins))
    leaked = [
        entry
        for entry in found["path"]
        if Path(entry).is_relative_to(ROOT) and not Path(entry).relative_to(ROOT).parts[0].startswith(".venv")
    ]
    assert leaked == [], "the repository's sources leaked onto sys.path"
