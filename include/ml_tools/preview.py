"""Local inference preview: run a deploy model on images, draw what it finds.

    python -m ml_tools.preview --model DIR_OR_PREFIX --images IMG... --out DIR \\
        [--classes a,b] [--threshold 0.3] [--data-shape N]

`--model` is a folder holding one `deploy_<name>-symbol.json` / `deploy_<name>-0000.params` pair
(what the model fix writes; its `hyperparams.json` gives the input size) or the path prefix
`.../deploy_<name>`. Each image is stretched to the model's square input, as the device's
inference function does with camera frames; boxes are drawn back on the original image. Writes
`<stem>.jpg` per image (boxes, class names, scores) and `contact_sheet.png`, and prints the
milliseconds per frame.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mxnet as mx
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model_fix.errors import HyperparamsError
from model_fix.hyperparams import HYPERPARAMS_FILE, hyperparam_int, load_hyperparams

COLOURS = ((255, 64, 64), (64, 160, 255), (255, 200, 0), (64, 220, 120), (200, 90, 255), (255, 140, 40))
THUMB = (320, 240)


class PreviewError(ValueError):
    """The model or an image cannot be used; the message names it."""


@dataclass
class Detection:
    class_id: int
    label: str
    score: float
    box: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax in source-image pixels


@dataclass
class PreviewResult:
    annotated: list[Path]
    contact_sheet: Path
    ms_per_frame: float  # decode + resize + inference + drawing, mean over frames
    inference_ms_per_frame: float  # the forward pass alone
    detections: dict[str, list[Detection]] = field(default_factory=dict)


def find_deploy_model(model: Path) -> tuple[str, int | None]:
    """(checkpoint prefix, image_shape from hyperparams.json or None) for a folder or a prefix."""
    model = Path(model)
    if model.is_dir():
        found = sorted(model.glob("deploy_*-symbol.json"))
        if len(found) != 1:
            raise PreviewError(f"{model}: expected one deploy_*-symbol.json, found {len(found)}")
        prefix = str(found[0])[: -len("-symbol.json")]
        folder = model
    else:
        prefix = str(model).removesuffix("-symbol.json")
        folder = Path(prefix).parent
        if not Path(prefix + "-symbol.json").is_file():
            raise PreviewError(f"{prefix}-symbol.json not found")
    if not Path(prefix + "-0000.params").is_file():
        raise PreviewError(f"{prefix}-0000.params not found")
    hyper = folder / HYPERPARAMS_FILE
    if not hyper.is_file():
        return prefix, None
    try:
        return prefix, hyperparam_int(load_hyperparams(hyper), "image_shape", str(hyper))
    except HyperparamsError as exc:
        raise PreviewError(str(exc)) from exc


class Detector:
    """A deploy model bound for one frame at a time on the CPU."""

    def __init__(self, prefix: str, data_shape: int):
        symbol, arg, aux = mx.model.load_checkpoint(prefix, 0)
        if symbol.list_outputs() != ["detection_output"]:
            raise PreviewError(
                f"{prefix}-symbol.json is not a deploy graph (outputs {symbol.list_outputs()})"
            )
        self.data_shape = data_shape
        self.module = mx.mod.Module(symbol, data_names=("data",), label_names=None, context=mx.cpu())
        self.module.bind(data_shapes=[("data", (1, 3, data_shape, data_shape))], for_training=False)
        self.module.set_params(arg, aux, allow_missing=False, allow_extra=True)

    def detect(self, image: Image.Image) -> tuple[np.ndarray, float]:
        """(rows of class_id, score, xmin, ymin, xmax, ymax normalised; forward ms) for one RGB image."""
        pixels = np.asarray(
            image.resize((self.data_shape, self.data_shape), Image.Resampling.BILINEAR), np.float32
        )
        batch = mx.io.DataBatch([mx.nd.array(pixels.transpose(2, 0, 1)[None])])
        started = time.perf_counter()
        self.module.forward(batch, is_train=False)
        out = self.module.get_outputs()[0].asnumpy()[0]
        elapsed = (time.perf_counter() - started) * 1000
        return out[out[:, 0] >= 0], elapsed


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def annotate(image: Image.Image, detections: Sequence[Detection]) -> Image.Image:
    """A copy of `image` with each detection's box, class name and score drawn on it."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(min(out.size) / 160))
    font = _font(max(12, round(min(out.size) / 30)))
    for det in detections:
        colour = COLOURS[det.class_id % len(COLOURS)]
        draw.rectangle(det.box, outline=colour, width=width)
        text = f"{det.label} {det.score:.2f}"
        left, top, right, bottom = draw.textbbox((det.box[0], det.box[1]), text, font=font)
        y = det.box[1] - (bottom - top) - 2 * width if det.box[1] > bottom - top + 2 * width else det.box[1]
        draw.rectangle((left, y, right + 2 * width, y + (bottom - top) + 2 * width), fill=colour)
        draw.text((det.box[0] + width, y + width - (top - det.box[1])), text, fill=(0, 0, 0), font=font)
    return out


def contact_sheet(images: Sequence[tuple[str, Image.Image]], out: Path) -> Path:
    """All annotated images as captioned thumbnails on one PNG."""
    columns = min(4, max(1, len(images)))
    rows = math.ceil(len(images) / columns)
    caption = 18
    sheet = Image.new("RGB", (columns * THUMB[0], rows * (THUMB[1] + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(13)
    for i, (name, img) in enumerate(images):
        thumb = img.copy()
        thumb.thumbnail(THUMB)
        x, y = (i % columns) * THUMB[0], (i // columns) * (THUMB[1] + caption)
        sheet.paste(thumb, (x + (THUMB[0] - thumb.width) // 2, y + (THUMB[1] - thumb.height) // 2))
        draw.text((x + 4, y + THUMB[1] + 2), name[:40], fill=(0, 0, 0), font=font)
    sheet.save(out, format="PNG")
    return out


def preview(
    model: Path,
    images: Sequence[Path],
    out_dir: Path,
    classes: Sequence[str] | None = None,
    threshold: float = 0.3,
    data_shape: int | None = None,
) -> PreviewResult:
    """Annotate `images` with the deploy model's detections above `threshold`; see the module doc."""
    if not images:
        raise PreviewError("no images given")
    prefix, trained_shape = find_deploy_model(model)
    shape = data_shape or trained_shape or 512
    detector = Detector(prefix, shape)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    annotated: list[Path] = []
    sheet_items: list[tuple[str, Image.Image]] = []
    found: dict[str, list[Detection]] = {}
    total_ms = infer_ms = 0.0
    for path in images:
        started = time.perf_counter()
        try:
            with Image.open(path) as src:
                image = src.convert("RGB")  # full size: boxes are drawn on the original
        except (OSError, ValueError) as exc:
            raise PreviewError(f"{path}: cannot read image: {exc}") from None
        rows, ms = detector.detect(image)
        dets = []
        for class_id, score, x0, y0, x1, y1 in rows:
            if score < threshold:
                continue
            cid = int(class_id)
            label = classes[cid] if classes and cid < len(classes) else f"class {cid}"
            box = (
                round(float(np.clip(x0, 0, 1)) * image.width),
                round(float(np.clip(y0, 0, 1)) * image.height),
                round(float(np.clip(x1, 0, 1)) * image.width),
                round(float(np.clip(y1, 0, 1)) * image.height),
            )
            if box[2] > box[0] and box[3] > box[1]:  # clipped to nothing at the frame's edge
                dets.append(Detection(cid, label, float(score), box))
        drawn = annotate(image, dets)
        target = out_dir / f"{Path(path).stem}.jpg"
        drawn.save(target, format="JPEG", quality=90)
        total_ms += (time.perf_counter() - started) * 1000
        infer_ms += ms
        annotated.append(target)
        sheet_items.append((Path(path).name, drawn))
        found[Path(path).name] = dets
    sheet = contact_sheet(sheet_items, out_dir / "contact_sheet.png")
    n = len(images)
    return PreviewResult(annotated, sheet, total_ms / n, infer_ms / n, found)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; prints one line per image and the milliseconds per frame."""
    parser = argparse.ArgumentParser(
        prog="python -m ml_tools.preview", description="Preview a deploy model on images."
    )
    parser.add_argument(
        "--model", type=Path, required=True, help="folder with deploy_*-symbol.json, or its prefix"
    )
    parser.add_argument("--images", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--classes", default=None, help="comma-separated class names, in class_id order")
    parser.add_argument("--threshold", type=float, default=0.3)
    parser.add_argument(
        "--data-shape", type=int, default=None, help="model input size (default: hyperparams.json)"
    )
    args = parser.parse_args(argv)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    try:
        result = preview(args.model, args.images, args.out, classes, args.threshold, args.data_shape)
    except PreviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, dets in result.detections.items():
        shown = ", ".join(f"{d.label} {d.score:.2f} {d.box}" for d in dets) or "nothing"
        print(f"{name}: {shown}")
    print(f"contact sheet: {result.contact_sheet}")
    print(f"{result.ms_per_frame:.1f} ms per frame ({result.inference_ms_per_frame:.1f} ms inference)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
