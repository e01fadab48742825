"""The evaluation report of one run: what a person looks at to trust the gate (no Airflow).

One self-contained HTML page (``index.html``) per run: the gate's decision and its reason, per-class
AP and mAP of the candidate and of the model now on the device (absent on a first run), their PR
curves, the holdout images worst first (labelled boxes missed, then false detections) and a contact
sheet of those images with the model's boxes drawn beside the labelled ones. The pictures are
embedded in the page as ``data:`` URIs, so the page shows whole however it is opened (the S3
console's *Open*, a presigned URL, a download), and are also returned as separate files.

Plots: matplotlib (3.11.2, pinned in requirements.txt and requirements/mwaa/*.txt). MWAA's
constraints pin no matplotlib, so it is installed from our requirements; it resolves under the
constraints of MWAA 3.3.1, 3.0.6 and 2.11.0 for Python 3.12 (its own needs, numpy, pyparsing,
packaging, python-dateutil and pillow, are all at the versions those constraints pin;
tests/test_requirements.py checks the resolution). It is the maintained, standard plotting library
(axes, legends, step curves, text layout), where drawing charts by hand with Pillow or SVG would be
our own code to keep. It is imported only inside the functions that draw (never when the DAG is
parsed), through its object API (``matplotlib.figure.Figure`` and the Agg canvas): no pyplot, no
global backend or figure state in a worker process. The contact sheet is drawn with Pillow (already
a requirement for image preparation): it is image compositing, not a chart.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from deeplens_pipeline.evaluation import IOU_THRESHOLD, Detection, iou, labelled_boxes
from deeplens_pipeline.groundtruth import LabelledImage

MAX_CONTACT_IMAGES = 24
"""Images on a contact sheet (worst first): enough to see a pattern, small enough to open fast."""
TILE = 256
"""Longest side of an image on the contact sheet, in pixels."""
LABELLED_COLOUR = (0, 200, 83)
"""Labelled boxes: green."""
PREDICTED_COLOUR = (255, 0, 200)
"""The model's boxes (score at or above the threshold): magenta."""
MODEL_STYLES = {"candidate": ("#1f77b4", "-"), "current": ("#ff7f0e", "--")}
"""Colour and line style of each model in the plots."""


class ReportError(ValueError):
    """An input of the report cannot be used; the message names it."""


@dataclass(frozen=True)
class ImageResult:
    """One holdout image scored at the display threshold: labelled and predicted boxes, misses."""

    source_ref: str
    labelled: list[tuple[int, tuple[float, float, float, float]]]
    predicted: list[Detection]
    """Detections at or above the threshold."""
    missed: int
    """Labelled boxes no shown detection of their class overlaps by IoU >= 0.5."""
    false_detections: int
    """Shown detections that match no labelled box of their class."""


def match_image(
    labelled: Sequence[tuple[int, tuple[float, float, float, float]]],
    predicted: Sequence[Detection],
    iou_threshold: float = IOU_THRESHOLD,
) -> tuple[int, int]:
    """(missed labelled boxes, false detections) of one image: per class, detections by score
    descending each take the best-overlapping unmatched labelled box (VOC's greedy matching)."""
    used = [False] * len(labelled)
    false = 0
    for det in sorted(predicted, key=lambda d: -d.score):
        best, best_iou = None, 0.0
        for k, (class_id, box) in enumerate(labelled):
            if class_id != det.class_id or used[k]:
                continue
            overlap = iou(det.box, box)
            if overlap > best_iou:
                best, best_iou = k, overlap
        if best is not None and best_iou >= iou_threshold:
            used[best] = True
        else:
            false += 1
    return used.count(False), false


def image_results(
    detections: Mapping[str, Sequence[Detection]],
    holdout: Sequence[LabelledImage],
    threshold: float,
) -> list[ImageResult]:
    """Every holdout image scored at ``threshold``, worst first (most missed, then most false
    detections, then by name)."""
    results = []
    for image in holdout:
        if image.source_ref not in detections:
            raise ReportError(f"no prediction for holdout image {image.source_ref}")
        shown = [d for d in detections[image.source_ref] if d.score >= threshold]
        truth = labelled_boxes(image)
        missed, false = match_image(truth, shown)
        results.append(ImageResult(image.source_ref, truth, shown, missed, false))
    return sorted(results, key=lambda r: (-r.missed, -r.false_detections, r.source_ref))


# --- plots (matplotlib, imported when drawing) -----------------------------------------------


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _models(candidate: Mapping[str, Any], current: Mapping[str, Any] | None) -> list[tuple[str, Mapping]]:
    return [("candidate", candidate), *([("current", current)] if current else [])]


def ap_chart(
    classes: Sequence[str], candidate: Mapping[str, Any], current: Mapping[str, Any] | None
) -> bytes:
    """A PNG bar chart of AP per class (and mAP) of each model; a class without labelled boxes is
    left out of mAP and drawn empty."""
    models = _models(candidate, current)
    names = [*classes, "mAP"]
    figure = _figure(max(5.0, 1.1 * len(names) * len(models) + 1.5), 3.6)
    axes = figure.add_subplot()
    width = 0.8 / len(models)
    for n, (label, result) in enumerate(models):
        per_class = result.get("per_class") or {}
        values = [(per_class.get(c) or {}).get("ap") for c in classes] + [result.get("map")]
        xs = [i + (n - (len(models) - 1) / 2) * width for i in range(len(names))]
        bars = axes.bar(
            xs,
            [v or 0.0 for v in values],
            width,
            label=f"{label} (mAP {result.get('map', 0.0):.3f})",
            color=MODEL_STYLES[label][0],
        )
        for bar, value in zip(bars, values, strict=True):
            text = "n/a" if value is None else f"{value:.2f}"
            axes.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    axes.set_xticks(range(len(names)), names)
    axes.set_ylim(0, 1.1)
    axes.set_ylabel(f"AP (VOC, IoU {IOU_THRESHOLD})")
    axes.set_title("Average precision on the holdout, per class")
    axes.legend(loc="upper right", fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def pr_curves(
    classes: Sequence[str], candidate: Mapping[str, Any], current: Mapping[str, Any] | None
) -> bytes:
    """A PNG with one precision-recall plot per class, each model's curve in its own style."""
    models = _models(candidate, current)
    columns = min(3, max(1, len(classes)))
    rows = max(1, math.ceil(len(classes) / columns))
    figure = _figure(4.0 * columns, 3.4 * rows)
    for n, name in enumerate(classes):
        axes = figure.add_subplot(rows, columns, n + 1)
        for label, result in models:
            entry = (result.get("per_class") or {}).get(name) or {}
            curve = entry.get("pr_curve") or []
            colour, style = MODEL_STYLES[label]
            ap = entry.get("ap")
            legend = f"{label} AP {'n/a' if ap is None else f'{ap:.3f}'}"
            if curve:
                recall, precision = [r for r, _ in curve], [p for _, p in curve]
                axes.plot(recall, precision, color=colour, linestyle=style, marker=".", label=legend)
            else:
                axes.plot([], [], color=colour, linestyle=style, label=f"{legend} (no detection)")
        axes.set_title(
            f"{name} ({(candidate.get('per_class') or {}).get(name, {}).get('labelled', 0)} labelled)"
        )
        axes.set_xlim(0, 1.02)
        axes.set_ylim(0, 1.05)
        axes.set_xlabel("recall")
        axes.set_ylabel("precision")
        axes.grid(alpha=0.3)
        axes.legend(loc="lower left", fontsize=8)
    return _png(figure)


# --- contact sheet (Pillow) ------------------------------------------------------------------


def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _tile(
    body: bytes | None, result: ImageResult, classes: Sequence[str], rank: int, threshold: float
) -> Any:
    from PIL import Image, ImageDraw

    caption_height = 34
    if body is None:
        picture = Image.new("RGB", (TILE, TILE * 3 // 4), (90, 90, 90))
        ImageDraw.Draw(picture).text((8, 8), "image not readable", fill=(255, 255, 255), font=_font(12))
    else:
        picture = Image.open(io.BytesIO(body))
        picture.draft("RGB", (TILE, TILE))  # JPEG: decode at a fraction of the size
        picture = picture.convert("RGB")
        picture.thumbnail((TILE, TILE))
    w, h = picture.size
    draw = ImageDraw.Draw(picture)
    small = _font(11)

    def corners(box: Sequence[float]) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = (min(max(v, 0.0), 1.0) for v in box)
        return x0 * (w - 1), y0 * (h - 1), max(x0, x1) * (w - 1), max(y0, y1) * (h - 1)

    for class_id, box in result.labelled:
        # Drawn 2 px outside the box, so a predicted box on the same place stays visible inside it.
        x0, y0, x1, y1 = corners(box)
        draw.rectangle((x0 - 2, y0 - 2, x1 + 2, y1 + 2), outline=LABELLED_COLOUR, width=3)
        name = classes[class_id] if class_id < len(classes) else str(class_id)
        draw.text((x0 + 3, max(y0, y1 - 14)), name, fill=LABELLED_COLOUR, font=small)
    for det in result.predicted:
        x0, y0, x1, y1 = corners(det.box)
        draw.rectangle((x0, y0, x1, y1), outline=PREDICTED_COLOUR, width=2)
        name = classes[det.class_id] if det.class_id < len(classes) else str(det.class_id)
        draw.text((x0 + 3, y0 + 2), f"{name} {det.score:.2f}", fill=PREDICTED_COLOUR, font=small)
    tile = Image.new("RGB", (TILE, TILE + caption_height), (255, 255, 255))
    tile.paste(picture, ((TILE - w) // 2, (TILE - h) // 2))
    text = ImageDraw.Draw(tile)
    filename = result.source_ref.rsplit("/", 1)[-1]
    if len(filename) > 36:
        filename = filename[:16] + "…" + filename[-19:]
    text.text((4, TILE + 2), f"#{rank} {filename}", fill=(0, 0, 0), font=small)
    text.text(
        (4, TILE + 17),
        f"missed {result.missed} of {len(result.labelled)}, false {result.false_detections}",
        fill=(170, 0, 0) if result.missed or result.false_detections else (0, 110, 0),
        font=small,
    )
    return tile


def contact_sheet(
    results: Sequence[ImageResult],
    bodies: Mapping[str, bytes | None],
    classes: Sequence[str],
    *,
    model_label: str,
    threshold: float,
    columns: int = 4,
    quality: int = 85,
) -> bytes:
    """A JPEG grid of ``results`` (in order: worst first) from the images' bytes (``bodies`` by
    source-ref; None draws a grey tile saying the image could not be read), the labelled boxes in
    green and ``model_label``'s boxes at or above ``threshold`` in magenta, with a legend."""
    from PIL import Image, ImageDraw

    if not results:
        raise ReportError("the contact sheet needs at least one image")
    columns = max(1, min(columns, len(results)))
    rows = math.ceil(len(results) / columns)
    gap, legend_height = 6, 36
    tile_h = TILE + 34
    width = columns * TILE + (columns + 1) * gap
    sheet = Image.new("RGB", (max(width, 520), legend_height + rows * (tile_h + gap) + gap), (235, 235, 235))
    draw = ImageDraw.Draw(sheet)
    font = _font(13)
    x = gap
    for colour, text in (
        (LABELLED_COLOUR, "labelled box"),
        (PREDICTED_COLOUR, f"{model_label} model's box (score >= {threshold:.2f})"),
    ):
        draw.rectangle((x, 12, x + 22, 26), outline=colour, width=3)
        draw.text((x + 28, 11), text, fill=(0, 0, 0), font=font)
        x += 40 + int(draw.textlength(text, font=font))
    for n, result in enumerate(results):
        row, column = divmod(n, columns)
        tile = _tile(bodies.get(result.source_ref), result, classes, n + 1, threshold)
        sheet.paste(tile, (gap + column * (TILE + gap), legend_height + gap + row * (tile_h + gap)))
    out = io.BytesIO()
    # 4:4:4: no chroma subsampling, which would blur the thin coloured box lines into grey.
    sheet.save(out, format="JPEG", quality=quality, optimize=True, subsampling=0)
    return out.getvalue()


# --- the page --------------------------------------------------------------------------------


def _data_uri(name: str, body: bytes) -> str:
    mime = "image/png" if name.endswith(".png") else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(body).decode('ascii')}"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _gate_section(gate: Mapping[str, Any] | None) -> str:
    if not gate:
        return (
            '<section class="gate none"><h2>Gate</h2><p>No gate decision reached this report '
            "(the gate did not run).</p></section>"
        )
    decision = gate.get("decision")
    headline = {
        "deploy": "Deployed the candidate model",
        "keep": "Kept the current model",
    }.get(decision, f"Decision {decision!r}")
    details = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>"
        for k, v in gate.items()
        if k not in ("decision", "reason", "deploy")
    )
    return (
        f'<section class="gate {html.escape(str(decision))}"><h2>Gate: {html.escape(headline)}</h2>'
        f"<p>{html.escape(str(gate.get('reason') or 'no reason given'))}</p>"
        f"{f'<table>{details}</table>' if details else ''}</section>"
    )


def _ap_table(classes: Sequence[str], candidate: Mapping[str, Any], current: Mapping[str, Any] | None) -> str:
    head = "<tr><th>class</th><th>labelled</th><th>candidate AP</th><th>detections</th>"
    if current:
        head += "<th>current AP</th><th>detections</th><th>change</th>"
    rows = [head + "</tr>"]
    for name in [*classes, None]:
        if name is None:
            cand, cur = candidate.get("map"), (current or {}).get("map")
            cells = ["<th>mAP</th><td></td>", f"<td><b>{_fmt(cand)}</b></td><td></td>"]
        else:
            c = (candidate.get("per_class") or {}).get(name) or {}
            p = ((current or {}).get("per_class") or {}).get(name) or {}
            cand, cur = c.get("ap"), p.get("ap")
            cells = [
                f"<th>{html.escape(name)}</th><td>{_fmt(c.get('labelled'))}</td>",
                f"<td>{_fmt(cand)}</td><td>{_fmt(c.get('detected'))}</td>",
            ]
        if current:
            change = cand - cur if cand is not None and cur is not None else None
            css = "" if change is None else (' class="better"' if change >= 0 else ' class="worse"')
            detected = "" if name is None else _fmt(p.get("detected"))
            sign = "" if change is None or change < 0 else "+"
            cells.append(
                f"<td>{_fmt(cur)}</td><td>{detected}</td>"
                f"<td{css}>{sign}{_fmt(change) if change is not None else '—'}</td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _worst_table(candidate: Sequence[ImageResult], current: Sequence[ImageResult] | None, limit: int) -> str:
    by_ref = {r.source_ref: r for r in current or []}
    head = "<tr><th>#</th><th>image</th><th>labelled</th><th>candidate missed</th><th>false</th>"
    if current:
        head += "<th>current missed</th><th>false</th>"
    rows = [head + "</tr>"]
    for n, r in enumerate(candidate[:limit], start=1):
        cells = (
            f"<td>{n}</td><td><code>{html.escape(r.source_ref)}</code></td><td>{len(r.labelled)}</td>"
            f"<td>{r.missed}</td><td>{r.false_detections}</td>"
        )
        if current:
            other = by_ref.get(r.source_ref)
            cells += (
                f"<td>{_fmt(other and other.missed)}</td><td>{_fmt(other and other.false_detections)}</td>"
            )
        rows.append(f"<tr>{cells}</tr>")
    return "<table>" + "".join(rows) + "</table>"


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1120px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td code{font-size:.85em}
.gate{padding:.6em 1em;border-radius:6px;border:2px solid #999}
.gate.deploy{border-color:#2e7d32;background:#e8f5e9}.gate.keep{border-color:#ef6c00;background:#fff3e0}
.better{color:#2e7d32}.worse{color:#c62828}img{max-width:100%;border:1px solid #ddd}
.meta{color:#666;font-size:.9em}
"""


def render_html(
    *,
    run_id: str,
    classes: Sequence[str],
    candidate: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    gate: Mapping[str, Any] | None,
    candidate_images: Sequence[ImageResult],
    current_images: Sequence[ImageResult] | None,
    pictures: Mapping[str, bytes],
    threshold: float,
    no_current_reason: str | None = None,
    generated_at: datetime | None = None,
) -> str:
    """The report page; ``pictures`` (file name → PNG/JPEG bytes) are embedded in their sections:
    ``ap_per_class.png``, ``pr_curves.png``, ``contact_candidate.jpg``, ``contact_current.jpg``."""
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")

    def picture(name: str, alt: str) -> str:
        if name not in pictures:
            return ""
        return f'<p><img src="{_data_uri(name, pictures[name])}" alt="{html.escape(alt)}"></p>'

    current_note = (
        f"<p>Current model: <code>{html.escape(str(current.get('model_artifact', '')))}</code></p>"
        if current
        else "<p>No current model was evaluated: "
        + html.escape(no_current_reason or "a first run, nothing on the device to compare with")
        + ".</p>"
    )
    shown = len([n for n in pictures if n.startswith("contact_")]) and min(
        MAX_CONTACT_IMAGES, len(candidate_images)
    )
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>Evaluation report · {html.escape(run_id)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Evaluation report</h1><p class=meta>Run <code>{html.escape(run_id)}</code> · "
        f"{candidate.get('images', len(candidate_images))} holdout images · IoU {IOU_THRESHOLD} · "
        f"generated {when}</p>",
        _gate_section(gate),
        "<h2>Average precision per class</h2>",
        f"<p>Candidate model: <code>{html.escape(str(candidate.get('model_artifact', '')))}</code></p>",
        current_note,
        _ap_table(classes, candidate, current),
        picture("ap_per_class.png", "AP per class"),
        "<h2>Precision-recall curves</h2>",
        picture("pr_curves.png", "Precision-recall curves per class"),
        f"<h2>Worst images first (boxes scored at threshold {threshold:.2f})</h2>",
        _worst_table(candidate_images, current_images, MAX_CONTACT_IMAGES),
        "<h2>Contact sheet: candidate model</h2>",
        f"<p>The {shown} worst holdout images: labelled boxes green, the model's magenta.</p>",
        picture("contact_candidate.jpg", "Contact sheet of the candidate model"),
    ]
    if "contact_current.jpg" in pictures:
        parts += [
            "<h2>Contact sheet: current model</h2>",
            "<p>The same images, with the current model's boxes.</p>",
            picture("contact_current.jpg", "Contact sheet of the current model"),
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def build_report(
    *,
    run_id: str,
    classes: Sequence[str],
    holdout: Sequence[LabelledImage],
    candidate: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    gate: Mapping[str, Any] | None,
    detections: Mapping[str, Mapping[str, Sequence[Detection]]],
    read_image: Callable[[str], bytes | None],
    threshold: float,
    max_images: int = MAX_CONTACT_IMAGES,
    no_current_reason: str | None = None,
) -> dict[str, bytes]:
    """Every file of the report by name: ``index.html`` (pictures embedded), ``ap_per_class.png``,
    ``pr_curves.png``, ``contact_candidate.jpg`` and, with a current model, ``contact_current.jpg``.

    ``detections`` holds each evaluated model's detections by source-ref ("candidate", and "current"
    when ``current`` is given); ``read_image`` returns an image's bytes (None if unreadable) and is
    called only for the ``max_images`` worst images of the candidate. ``no_current_reason`` says
    why there is no current model to compare with (shown when ``current`` is None).
    """
    if not 0 <= threshold <= 1:
        raise ReportError(f"threshold must be in [0, 1], not {threshold}")
    if max_images < 1:
        raise ReportError(f"max_images must be at least 1, not {max_images}")
    if "candidate" not in detections:
        raise ReportError("no detections of the candidate model")
    if current and "current" not in detections:
        raise ReportError("a current model's metrics came without its detections")
    candidate_images = image_results(detections["candidate"], holdout, threshold)
    current_images = image_results(detections["current"], holdout, threshold) if current else None
    worst = candidate_images[:max_images]
    bodies = {r.source_ref: read_image(r.source_ref) for r in worst}
    files = {
        "ap_per_class.png": ap_chart(classes, candidate, current),
        "pr_curves.png": pr_curves(classes, candidate, current),
        "contact_candidate.jpg": contact_sheet(
            worst, bodies, classes, model_label="candidate", threshold=threshold
        ),
    }
    if current_images is not None:
        by_ref = {r.source_ref: r for r in current_images}
        files["contact_current.jpg"] = contact_sheet(
            [by_ref[r.source_ref] for r in worst], bodies, classes, model_label="current", threshold=threshold
        )
    page = render_html(
        run_id=run_id,
        classes=classes,
        candidate=candidate,
        current=current,
        gate=gate,
        candidate_images=candidate_images,
        current_images=current_images,
        pictures=files,
        threshold=threshold,
        no_current_reason=no_current_reason,
    )
    return {"index.html": page.encode("utf-8"), **files}
