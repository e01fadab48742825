"""The evaluation report: worst images first, real plots and a contact sheet with both kinds of box."""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image

from deeplens_pipeline import evaluation
from deeplens_pipeline.evaluation import Detection
from deeplens_pipeline.evaluation_report import (
    LABELLED_COLOUR,
    PREDICTED_COLOUR,
    TILE,
    ReportError,
    build_report,
    image_results,
    match_image,
)
from deeplens_pipeline.groundtruth import LabelledImage

CLASSES = ["cat", "dog"]
W, H = 320, 240


def _image(name: str, boxes: list[tuple[int, int, int, int, int]]) -> LabelledImage:
    return LabelledImage(
        f"s3://b/holdout/{name}.jpg",
        W,
        H,
        3,
        [{"class_id": c, "left": x, "top": y, "width": w, "height": h} for c, x, y, w, h in boxes],
    )


def _det(class_id: int, score: float, x: int, y: int, w: int, h: int) -> Detection:
    return Detection(class_id, score, (x / W, y / H, (x + w) / W, (y + h) / H))


HOLDOUT = [
    _image("good", [(0, 40, 40, 100, 100)]),
    _image("two-missed", [(0, 20, 20, 80, 80), (1, 180, 100, 100, 100)]),
    _image("one-false", [(1, 100, 50, 120, 120)]),
]
CANDIDATE = {
    HOLDOUT[0].source_ref: [_det(0, 0.9, 42, 40, 100, 98)],
    HOLDOUT[1].source_ref: [_det(1, 0.8, 20, 20, 80, 80), _det(0, 0.2, 20, 20, 80, 80)],
    HOLDOUT[2].source_ref: [_det(1, 0.7, 100, 50, 120, 120), _det(0, 0.6, 0, 0, 50, 50)],
}
CURRENT = {
    HOLDOUT[0].source_ref: [],
    HOLDOUT[1].source_ref: [_det(0, 0.9, 20, 20, 80, 80), _det(1, 0.9, 180, 100, 100, 100)],
    HOLDOUT[2].source_ref: [_det(1, 0.9, 100, 50, 120, 120)],
}


def _metrics(detections: dict, label: str) -> dict:
    return {"label": label, **evaluation.evaluate(detections, HOLDOUT, CLASSES).as_dict()}


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (W, H), colour).save(out, format="JPEG", quality=95)
    return out.getvalue()


def test_matching_counts_misses_and_false_detections() -> None:
    box = (0, (0.1, 0.1, 0.5, 0.5))
    assert match_image([box], [Detection(0, 0.9, (0.1, 0.1, 0.5, 0.5))]) == (0, 0)
    assert match_image([box], [Detection(1, 0.9, (0.1, 0.1, 0.5, 0.5))]) == (1, 1)  # wrong class
    assert match_image([box], [Detection(0, 0.9, (0.4, 0.4, 0.9, 0.9))]) == (1, 1)  # IoU < 0.5
    two = [Detection(0, 0.9, (0.1, 0.1, 0.5, 0.5)), Detection(0, 0.8, (0.1, 0.1, 0.5, 0.49))]
    assert match_image([box], two) == (0, 1)  # one box matches once
    assert match_image([], []) == (0, 0)


def test_images_are_scored_at_the_threshold_worst_first() -> None:
    results = image_results(CANDIDATE, HOLDOUT, threshold=0.5)
    assert [r.source_ref.rsplit("/", 1)[1] for r in results] == [
        "two-missed.jpg",
        "one-false.jpg",
        "good.jpg",
    ]
    worst = results[0]
    # The dog detection lies on the cat; the 0.2 cat detection is under the threshold.
    assert (worst.missed, worst.false_detections, len(worst.predicted)) == (2, 1, 1)
    assert (results[1].missed, results[1].false_detections) == (0, 1)
    # Below the threshold the low-score cat detection counts: one fewer miss.
    assert image_results(CANDIDATE, HOLDOUT, threshold=0.1)[0].missed == 1
    with pytest.raises(ReportError, match="no prediction for holdout image s3://b/holdout/good.jpg"):
        image_results({}, HOLDOUT, threshold=0.5)


def _decoded_pictures(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/(?:png|jpeg);base64,([^"]+)"', page)]


def test_the_report_compares_both_models_and_shows_the_gate() -> None:
    read: list[str] = []
    colours = {HOLDOUT[0].source_ref: (200, 200, 200), HOLDOUT[1].source_ref: (20, 20, 20)}

    def read_image(ref: str) -> bytes | None:
        read.append(ref)
        return _jpeg(colours[ref]) if ref in colours else None  # the third cannot be read

    gate = {"decision": "keep", "reason": "mAP 0.4 < current 0.9 - 0.02 <script>", "candidate_map": 0.4}
    files = build_report(
        run_id="manual__2026-11-26T09:00:00+00:00",
        classes=CLASSES,
        holdout=HOLDOUT,
        candidate=_metrics(CANDIDATE, "candidate"),
        current=_metrics(CURRENT, "current"),
        gate=gate,
        detections={"candidate": CANDIDATE, "current": CURRENT},
        read_image=read_image,
        threshold=0.5,
    )
    assert set(files) == {
        "index.html",
        "ap_per_class.png",
        "pr_curves.png",
        "contact_candidate.jpg",
        "contact_current.jpg",
    }
    assert sorted(read) == sorted(r.source_ref for r in HOLDOUT)  # each image read once for both sheets
    for name in ("ap_per_class.png", "pr_curves.png"):
        plot = Image.open(io.BytesIO(files[name]))
        assert plot.format == "PNG" and plot.width >= 400 and plot.height >= 300
        assert len(plot.convert("RGB").getcolors(1 << 20)) > 20  # drawn, not blank
    page = files["index.html"].decode()
    assert "Gate: Kept the current model" in page
    assert "&lt;script&gt;" in page and "<script>" not in page
    assert page.index("two-missed.jpg") < page.index("one-false.jpg") < page.index("good.jpg")
    for name in CLASSES:
        assert f"<th>{name}</th>" in page
    embedded = _decoded_pictures(page)
    assert embedded == [files[n] for n in ("ap_per_class.png", "pr_curves.png")] + [
        files["contact_candidate.jpg"],
        files["contact_current.jpg"],
    ]

    sheet = Image.open(io.BytesIO(files["contact_candidate.jpg"])).convert("RGB")
    assert sheet.width >= 3 * TILE
    # Tile 1 (worst: two-missed, dark): the labelled dog box's top edge in green, the predicted
    # dog box (drawn over the labelled cat) in magenta; tile 2 (one-false: unreadable) is grey.
    gap, legend, scale = 6, 36, TILE / W
    x0, y0 = gap, legend + gap + (TILE - round(H * scale)) // 2

    def near(pixel: tuple[int, int, int], colour: tuple[int, int, int]) -> bool:
        return all(abs(a - b) < 60 for a, b in zip(pixel, colour, strict=True))

    green = sheet.getpixel((x0 + round(230 * scale), y0 + round(100 * scale) - 1))  # 2 px outside
    magenta = sheet.getpixel((x0 + round(20 * scale), y0 + round(60 * scale)))  # its left edge
    assert near(green, LABELLED_COLOUR), green
    assert near(magenta, PREDICTED_COLOUR), magenta
    grey = sheet.getpixel((TILE + 2 * gap + TILE // 2, legend + gap + TILE // 2))
    assert near(grey, (90, 90, 90)), grey


def test_a_first_run_reports_the_candidate_alone() -> None:
    files = build_report(
        run_id="scheduled__2026-11-26",
        classes=CLASSES,
        holdout=HOLDOUT,
        candidate=_metrics(CANDIDATE, "candidate"),
        current=None,
        gate={"decision": "deploy", "reason": "no model on the device yet"},
        detections={"candidate": CANDIDATE},
        read_image=lambda ref: _jpeg((128, 128, 128)),
        threshold=0.5,
        max_images=2,
    )
    assert "contact_current.jpg" not in files
    page = files["index.html"].decode()
    assert "Gate: Deployed the candidate model" in page and "No current model was evaluated" in page
    assert "current AP" not in page
    sheet = Image.open(io.BytesIO(files["contact_candidate.jpg"]))
    assert sheet.width < 3 * TILE  # two images, not three


def test_bad_inputs_are_named() -> None:
    common = {
        "run_id": "r",
        "classes": CLASSES,
        "holdout": HOLDOUT,
        "candidate": _metrics(CANDIDATE, "candidate"),
        "gate": None,
        "read_image": lambda ref: None,
    }
    with pytest.raises(ReportError, match="threshold must be in"):
        build_report(**common, current=None, detections={"candidate": CANDIDATE}, threshold=1.5)
    with pytest.raises(ReportError, match="without its detections"):
        build_report(
            **common, current=_metrics(CURRENT, "current"), detections={"candidate": CANDIDATE}, threshold=0.5
        )
    page = build_report(**common, current=None, detections={"candidate": CANDIDATE}, threshold=0.5)
    assert "the gate did not run" in page["index.html"].decode()
