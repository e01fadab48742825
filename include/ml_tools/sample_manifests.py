"""Ground Truth-style train/validation manifests from a generated sample dataset's answer key.

What the emulator's pipeline produces on the sample dataset, without the pipeline: optionally each
image letterboxed to a square (the preprocess stage's default), the answer key's boxes moved with
it, written as augmented-manifest lines (`source-ref` = local path, the label attribute in Ground
Truth's bounding-box format). Used by the trainer's tests, its mAP measurement and the benchmarks.

    python -m ml_tools.sample_manifests DATASET_DIR OUT_DIR [--letterbox 300] [--attribute bb]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image


def _letterbox(src: Path, dst: Path, size: int) -> tuple[float, int, int]:
    """Pad-and-resize `src` to a `size` square JPEG at `dst`; (scale, x offset, y offset)."""
    with Image.open(src) as img:
        rgb = img.convert("RGB")
    scale = size / max(rgb.width, rgb.height)
    w, h = round(rgb.width * scale), round(rgb.height * scale)
    ox, oy = (size - w) // 2, (size - h) // 2
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    canvas.paste(rgb.resize((w, h), Image.Resampling.BILINEAR), (ox, oy))
    canvas.save(dst, format="JPEG", quality=92)
    return scale, ox, oy


def write_sample_manifests(
    dataset_dir: Path,
    out_dir: Path,
    attribute: str = "bb",
    letterbox: int | None = None,
    validation_share: float = 0.2,
    seed: int = 0,
) -> tuple[Path, Path, list[str]]:
    """(train manifest, validation manifest, classes) for the dataset at `dataset_dir`."""
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    key = json.loads((dataset_dir / "answer_key.json").read_text())
    classes = list(key["classes"])
    out_dir.mkdir(parents=True, exist_ok=True)
    image_dir = out_dir / "images"
    if letterbox:
        image_dir.mkdir(exist_ok=True)
    lines = []
    for name in sorted(key["images"]):
        entry = key["images"][name]
        src = (dataset_dir / "images" / name).resolve()
        width, height = entry["width"], entry["height"]
        scale, ox, oy = 1.0, 0, 0
        if letterbox:
            dst = (image_dir / name).with_suffix(".jpg")
            scale, ox, oy = _letterbox(src, dst, letterbox)
            src, width, height = dst.resolve(), letterbox, letterbox
        annotations = [
            {
                "class_id": classes.index(o["label"]),
                "left": round(o["left"] * scale + ox),
                "top": round(o["top"] * scale + oy),
                "width": round(o["width"] * scale),
                "height": round(o["height"] * scale),
            }
            for o in entry["objects"]
        ]
        label = {"image_size": [{"width": width, "height": height, "depth": 3}], "annotations": annotations}
        metadata = {
            "class-map": {str(i): c for i, c in enumerate(classes)},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
        }
        lines.append(
            json.dumps({"source-ref": str(src), attribute: label, f"{attribute}-metadata": metadata})
        )
    random.Random(seed).shuffle(lines)
    n_val = max(1, round(len(lines) * validation_share))
    train, validation = out_dir / "train.manifest", out_dir / "validation.manifest"
    train.write_text("\n".join(lines[n_val:]) + "\n")
    validation.write_text("\n".join(lines[:n_val]) + "\n")
    return train, validation, classes


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; prints the two manifest paths."""
    parser = argparse.ArgumentParser(prog="python -m ml_tools.sample_manifests")
    parser.add_argument("dataset_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--attribute", default="bb")
    parser.add_argument("--letterbox", type=int, default=None, help="square size to letterbox images to")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train, validation, _ = write_sample_manifests(
        args.dataset_dir, args.out_dir, args.attribute, args.letterbox, seed=args.seed
    )
    print(train)
    print(validation)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
