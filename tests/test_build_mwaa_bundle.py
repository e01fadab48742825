import hashlib
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

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
