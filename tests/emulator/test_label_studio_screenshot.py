"""What an annotator sees (scripts/label_studio_screenshot.py): the run's image and classes in Label Studio.

The DAG's own backend makes the project, the S3 storage (presigned URLs on the emulator) and the
task on the session's real Label Studio; headless Chromium signs in, opens the task and must show
the image (fetched from the emulator through the presigned URL) and every class. The screenshot is
kept in build/label-studio-screenshot/ for a reviewer. Needs Debian's chromium and the playwright
package (requirements/airflow-dev.txt): without them the test is skipped on a developer's machine
and fails in CI (``CI=true``), where their absence is a setup error.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "label_studio_screenshot", ROOT / "scripts" / "label_studio_screenshot.py"
)
screenshot = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = screenshot  # its dataclasses look their module up while it executes
spec.loader.exec_module(screenshot)

KEPT = ROOT / "build" / "label-studio-screenshot"
CLASSES = ["blue_box", "yellow_box", "red ball"]  # a space, too: the label_config quotes it


@pytest.fixture
def browser() -> None:
    """Skip (fail under CI=true) when Chromium or playwright is missing."""
    try:
        screenshot.find_chromium()
        screenshot.check_playwright()
    except screenshot.Missing as err:
        if os.environ.get("CI", "").strip().lower() in ("true", "1"):
            pytest.fail(f"CI must be able to take the Label Studio screenshot: {err}")
        pytest.skip(str(err))


def test_annotator_sees_the_image_and_the_classes(browser, emulator, label_studio, tmp_path):
    out = tmp_path / "label-studio-task.png"
    shot = screenshot.run(
        out,
        CLASSES,
        work_dir=tmp_path / "work",
        emulator_url=emulator.url,
        label_studio=label_studio,
        bucket=f"deeplens-ls-shot-{uuid.uuid4().hex[:8]}",
    )
    KEPT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out, KEPT / out.name)

    # The page: the task's image has its real pixels, fetched from the emulator through the
    # presigned URL Label Studio redirected to, and every class is a label button.
    (photo,) = (tmp_path / "work" / "dataset" / "images").iterdir()
    with Image.open(photo) as source:
        assert shot.natural_size == source.size
    assert shot.shown_size[0] > 300, shot
    assert "/data?" in shot.page_url and "task=" in shot.page_url, shot.page_url
    assert any(
        line.startswith(f"GET {label_studio.url}/tasks/") and "/resolve/ -> 303" in line
        for line in shot.network
    ), shot.network
    assert any(
        line.startswith(f"GET {emulator.url}/deeplens-ls-shot-") and "-> 200" in line for line in shot.network
    ), shot.network
    assert shot.visible_labels == CLASSES
    # On S3 (the emulator answers any origin) the bucket's CORS rules must let the page's origin read.
    assert shot.cors_allows_origin

    # The PNG: the viewport, with the photo's many colours (not a blank or an error page).
    assert out.stat().st_size > 50_000
    with Image.open(out) as png:
        assert png.format == "PNG"
        assert png.size == (screenshot.VIEWPORT["width"], screenshot.VIEWPORT["height"])
        colours = png.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is not None and len(colours) > 5_000
    assert shot.seconds < 60, shot.seconds


def test_cors_rules_are_read_as_s3_does():
    rule = {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}
    assert screenshot.cors_allows([rule], "http://127.0.0.1:8080")
    assert screenshot.cors_allows(
        [{**rule, "AllowedOrigins": ["http://127.0.0.1:*"]}], "http://127.0.0.1:8080"
    )
    assert not screenshot.cors_allows([{**rule, "AllowedOrigins": ["https://ls.example.com"]}], "http://x")
    assert not screenshot.cors_allows([{**rule, "AllowedMethods": ["PUT"]}], "http://127.0.0.1:8080")
    assert not screenshot.cors_allows([], "http://127.0.0.1:8080")
