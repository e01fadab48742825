"""The trigger form in a real browser (scripts/trigger_form_check.py): Airflow 3.3.1's UI, headless Chromium.

The defaults plus a bucket start a run; a bad bucket is refused with the rule in words; every
pattern is read alike by Python and by ECMA-262. The screenshots stay in build/trigger-form/ (and in
the test's tmp folder), so a CI run keeps them. Needs Debian's chromium (``apt-get install -y
chromium``) and the ``playwright`` package (requirements/airflow-dev.txt): without them the test is
skipped on a developer's machine, and fails in CI (``CI=true``), where their absence is a setup error.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "trigger_form_check.py"
KEPT = ROOT / "build" / "trigger-form"
sys.path.insert(0, str(SCRIPT.parent))
from trigger_form_check import EXIT_NO_BROWSER, find_chromium  # noqa: E402


def _missing() -> str | None:
    if find_chromium() is None:
        return "no Chromium at /usr/bin/chromium (apt-get install -y chromium, or set $CHROMIUM)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (make env: requirements/airflow-dev.txt)"
    return None


@pytest.mark.e2e
def test_trigger_form_in_a_browser(tmp_path):
    missing = _missing()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must be able to drive the trigger form: {missing}")
        pytest.skip(missing)
    artefacts = tmp_path / "trigger-form"
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--artefacts", str(artefacts)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    seconds = time.monotonic() - started
    if artefacts.exists():  # kept whatever the outcome: screenshots, the services' logs, report.json
        shutil.rmtree(KEPT, ignore_errors=True)
        shutil.copytree(artefacts, KEPT)
    assert completed.returncode != EXIT_NO_BROWSER, completed.stderr
    assert completed.returncode == 0, (
        f"{completed.stderr[-4000:]}\n{completed.stdout[-2000:]}\nscreenshots and logs in {KEPT}"
    )
    report = json.loads((artefacts / "report.json").read_text())
    assert report["form"]["sections_in_error"] == []
    assert report["form"]["optional"] == [
        "image_source",
        "labels_manifest",
        "ssh_host",
        "ssh_key_file",
        "training_image",
    ]
    assert report["bad_bucket_message"].startswith(
        'Invalid input for param bucket: "a bucket name that begins'
    )
    assert report["run"]["state"] in ("queued", "running")
    assert report["run"]["conf_nulls"] == ["ssh_host"]  # a cleared optional field arrives as null
    assert report["patterns_checked"] >= 15
    for name in ("1-form-opens", "3-bad-bucket-refused", "5-run-started"):
        assert (KEPT / f"{name}.png").stat().st_size > 10_000, name
    print(f"trigger form checked in {seconds:.0f} s; screenshots in {KEPT}")
