"""The generated sample dataset: photographs of coloured boxes, with their answer key.

Stands in for the team's photos in the emulator. Each image shows zero to three boxes of the
dataset's classes (drawn as lit cuboids with a printed label band) on a varied background
(floor, table, wall, noise), plus unlabelled distractor boxes and blobs in other colours, under
varied lighting, colour cast, blur, noise and JPEG quality. Image sizes and aspect ratios vary
(landscape and portrait) and some images are PNG. The answer key gives every labelled box in
source-image pixels; the emulator's simulated Ground Truth workforce labels from it.

Pillow and the standard library only (it runs in the Airflow environment). Deterministic for a
given seed: the same call writes byte-identical files.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

DEFAULT_CLASSES: tuple[str, ...] = ("blue_box", "yellow_box")

# (width, height) of generated photos: landscape, portrait and wide, like phone and camera frames.
IMAGE_SIZES: tuple[tuple[int, int], ...] = (
    (640, 480),
    (800, 600),
    (480, 640),
    (960, 540),
    (600, 800),
    (720, 540),
)
PNG_SHARE = 0.15
EMPTY_IMAGE_SHARE = 0.05
MAX_OBJECTS = 3

# Hues (0..1) for colour words a class name may contain; other names get the free hues in turn.
NAMED_HUES: dict[str, float] = {
    "red": 0.0,
    "orange": 0.07,
    "yellow": 0.14,
    "green": 0.33,
    "cyan": 0.5,
    "blue": 0.61,
    "purple": 0.78,
    "pink": 0.9,
}
_FALLBACK_HUES: tuple[float, ...] = (0.61, 0.14, 0.0, 0.33, 0.78, 0.5, 0.07, 0.9)
_MIN_HUE_GAP = 0.07


@dataclass(frozen=True)
class _Box:
    left: int
    top: int
    width: int
    height: int

    def overlaps(self, other: _Box, margin: int) -> bool:
        return not (
            self.left + self.width + margin <= other.left
            or other.left + other.width + margin <= self.left
            or self.top + self.height + margin <= other.top
            or other.top + other.height + margin <= self.top
        )


def class_hues(classes: Sequence[str]) -> dict[str, float]:
    """The hue each class is painted in: its colour word if its name has one, else a free hue."""
    hues: dict[str, float] = {}
    for name in classes:
        word = next((w for w in NAMED_HUES if w in name.lower()), None)
        if word is not None:
            hues[name] = NAMED_HUES[word]
    for name in classes:
        if name in hues:
            continue
        free = [h for h in _FALLBACK_HUES if all(_hue_gap(h, u) >= _MIN_HUE_GAP for u in hues.values())]
        if not free:
            raise ValueError(f"too many classes to give each a distinct colour: {list(classes)}")
        hues[name] = free[0]
    if len(set(hues.values())) != len(hues):
        raise ValueError(f"two classes would get the same colour: {hues}")
    return hues


def _hue_gap(a: float, b: float) -> float:
    d = abs(a - b) % 1.0
    return min(d, 1.0 - d)


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, max(0.0, min(1.0, s)), max(0.0, min(1.0, v)))
    return round(r * 255), round(g * 255), round(b * 255)


def _noise_layer(rng: random.Random, size: tuple[int, int], cell: int) -> Image.Image:
    """Smooth greyscale noise: random bytes on a coarse grid, scaled up bilinearly."""
    w, h = max(1, size[0] // cell), max(1, size[1] // cell)
    coarse = Image.frombytes("L", (w, h), rng.randbytes(w * h))
    return coarse.resize(size, Image.Resampling.BILINEAR)


def _background(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A floor, table, wall or cluttered backdrop in muted colours."""
    w, h = size
    kind = rng.choice(("wood", "tiles", "wall", "noise", "two_tone"))
    base_hue = rng.random()
    base = _rgb(base_hue, rng.uniform(0.05, 0.35), rng.uniform(0.35, 0.85))
    img = Image.new("RGB", size, base)
    draw = ImageDraw.Draw(img)
    if kind == "wood":
        y = 0
        while y < h:
            band = rng.randint(8, 40)
            shade = rng.uniform(0.8, 1.15)
            draw.rectangle((0, y, w, y + band), fill=tuple(min(255, int(c * shade)) for c in base))
            y += band
    elif kind == "tiles":
        tile = rng.randint(40, 120)
        other = _rgb(base_hue + rng.uniform(-0.1, 0.1), rng.uniform(0.0, 0.3), rng.uniform(0.3, 0.9))
        for ty in range(0, h, tile):
            for tx in range(0, w, tile):
                if (tx // tile + ty // tile) % 2:
                    draw.rectangle((tx, ty, tx + tile - 1, ty + tile - 1), fill=other)
        for tx in range(0, w, tile):
            draw.line((tx, 0, tx, h), fill=(60, 60, 60), width=2)
        for ty in range(0, h, tile):
            draw.line((0, ty, w, ty), fill=(60, 60, 60), width=2)
    elif kind == "two_tone":
        split = rng.randint(h // 4, 3 * h // 4)
        floor = _rgb(base_hue + 0.5, rng.uniform(0.05, 0.3), rng.uniform(0.3, 0.8))
        draw.rectangle((0, split, w, h), fill=floor)
    elif kind == "noise":
        img = Image.merge(
            "RGB",
            [
                Image.blend(Image.new("L", size, c), _noise_layer(rng, size, rng.randint(4, 24)), 0.5)
                for c in base
            ],
        )
    # Soft texture over every backdrop so no background is a flat colour.
    texture = _noise_layer(rng, size, rng.randint(3, 12)).convert("RGB")
    return Image.blend(img, texture, rng.uniform(0.08, 0.25))


def _draw_cuboid(draw: ImageDraw.ImageDraw, box: _Box, hue: float, rng: random.Random) -> None:
    """A lit box seen from slightly above: front face, top face and one side face, filling `box`."""
    sat = rng.uniform(0.55, 0.95)
    val = rng.uniform(0.55, 0.95)
    depth_x = int(box.width * rng.uniform(0.0, 0.25)) * rng.choice((-1, 1))
    depth_y = int(box.height * rng.uniform(0.08, 0.3))
    fx0 = box.left + max(0, -depth_x)
    fx1 = box.left + box.width - 1 - max(0, depth_x)
    fy0 = box.top + depth_y
    fy1 = box.top + box.height - 1
    front = _rgb(hue + rng.uniform(-0.02, 0.02), sat, val)
    top = _rgb(hue, sat * 0.75, min(1.0, val * 1.2))
    side = _rgb(hue, sat, val * 0.65)
    draw.polygon(
        [(fx0, fy0), (fx1, fy0), (fx1 + depth_x, box.top), (fx0 + depth_x, box.top)], fill=top, outline=top
    )
    if depth_x > 0:
        draw.polygon(
            [(fx1, fy0), (fx1 + depth_x, box.top), (fx1 + depth_x, fy1 - depth_y), (fx1, fy1)],
            fill=side,
            outline=side,
        )
    elif depth_x < 0:
        draw.polygon(
            [(fx0, fy0), (fx0 + depth_x, box.top), (fx0 + depth_x, fy1 - depth_y), (fx0, fy1)],
            fill=side,
            outline=side,
        )
    draw.rectangle((fx0, fy0, fx1, fy1), fill=front)
    # A printed label band on the front face, as on real storage boxes.
    fw, fh = fx1 - fx0, fy1 - fy0
    if fw > 12 and fh > 12 and rng.random() < 0.7:
        lx0 = fx0 + int(fw * rng.uniform(0.15, 0.3))
        ly0 = fy0 + int(fh * rng.uniform(0.15, 0.3))
        lx1 = lx0 + int(fw * rng.uniform(0.25, 0.45))
        ly1 = ly0 + int(fh * rng.uniform(0.12, 0.25))
        draw.rectangle((lx0, ly0, lx1, ly1), fill=(235, 235, 230))


def _draw_distractor(draw: ImageDraw.ImageDraw, box: _Box, hue: float, rng: random.Random) -> None:
    """Something that is not a labelled class: a box in another colour, or a round or flat object."""
    kind = rng.choice(("cuboid", "ellipse", "slab"))
    if kind == "cuboid":
        _draw_cuboid(draw, box, hue, rng)
        return
    colour = _rgb(hue, rng.uniform(0.0, 0.8), rng.uniform(0.3, 0.95))
    shape = (box.left, box.top, box.left + box.width - 1, box.top + box.height - 1)
    if kind == "ellipse":
        draw.ellipse(shape, fill=colour)
    else:
        draw.rounded_rectangle(shape, radius=min(box.width, box.height) // 4, fill=colour)


def _place(
    rng: random.Random, size: tuple[int, int], taken: list[_Box], min_frac: float, max_frac: float
) -> _Box | None:
    """A box of random size and aspect ratio that overlaps none of `taken`, or None after 50 tries."""
    w, h = size
    short = min(w, h)
    for _ in range(50):
        side = rng.uniform(min_frac, max_frac) * short
        aspect = rng.uniform(0.6, 1.7)
        bw = max(8, min(w - 2, int(side * aspect**0.5)))
        bh = max(8, min(h - 2, int(side / aspect**0.5)))
        left = rng.randint(0, w - bw)
        top = rng.randint(0, h - bh)
        candidate = _Box(left, top, bw, bh)
        if not any(candidate.overlaps(t, margin=4) for t in taken):
            return candidate
    return None


def _lighting(img: Image.Image, rng: random.Random) -> Image.Image:
    """Exposure, contrast, colour cast, a light fall-off across the frame, blur and sensor noise."""
    w, h = img.size
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.65, 1.3))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.75, 1.2))
    cast = tuple(rng.uniform(0.88, 1.12) for _ in range(3))
    img = Image.merge(
        "RGB",
        [band.point(lambda v, k=k: min(255, int(v * k))) for band, k in zip(img.split(), cast, strict=True)],
    )
    # Directional light: a gradient multiplied over the frame.
    gradient = Image.linear_gradient("L").rotate(rng.uniform(0, 360), expand=False).resize((w, h))
    low = rng.randint(150, 230)
    gradient = gradient.point(lambda v, low=low: low + (255 - low) * v // 255)
    img = Image.composite(img, Image.new("RGB", (w, h), (0, 0, 0)), gradient)
    if rng.random() < 0.35:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.6)))
    grain = Image.frombytes("L", (w, h), rng.randbytes(w * h)).convert("RGB")
    return Image.blend(img, grain, rng.uniform(0.02, 0.07))


def _render_image(
    rng: random.Random, classes: Sequence[str], hues: dict[str, float]
) -> tuple[Image.Image, list[dict[str, object]]]:
    size = rng.choice(IMAGE_SIZES)
    img = _background(rng, size)
    draw = ImageDraw.Draw(img)
    taken: list[_Box] = []
    objects: list[dict[str, object]] = []
    count = 0 if rng.random() < EMPTY_IMAGE_SHARE else rng.randint(1, MAX_OBJECTS)
    for _ in range(count):
        box = _place(rng, size, taken, 0.16, 0.42)
        if box is None:
            continue
        label = rng.choice(list(classes))
        _draw_cuboid(draw, box, hues[label], rng)
        taken.append(box)
        objects.append(
            {"label": label, "left": box.left, "top": box.top, "width": box.width, "height": box.height}
        )
    free_hues = [
        h
        for h in (i / 24 for i in range(24))
        if all(_hue_gap(h, u) >= 2 * _MIN_HUE_GAP for u in hues.values())
    ]
    for _ in range(rng.randint(0, 2)):
        box = _place(rng, size, taken, 0.08, 0.3)
        if box is None or not free_hues:
            continue
        _draw_distractor(draw, box, rng.choice(free_hues), rng)
        taken.append(box)
    return _lighting(img, rng), objects


def generate_sample_dataset(
    out_dir: Path, n_images: int = 60, classes: Sequence[str] = DEFAULT_CLASSES, seed: int = 0
) -> Path:
    """Write `n_images` photos to `out_dir/images/` and their labels to `out_dir/answer_key.json`.

    The answer key is `{"classes": [...], "images": {"<file name>": {"width": W, "height": H,
    "objects": [{"label", "left", "top", "width", "height"}]}}}` in source-image pixels.
    Returns `out_dir`.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    classes = [c.strip() for c in classes]
    if not classes or any(not c for c in classes) or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct non-empty names, got {classes}")
    hues = class_hues(classes)
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    images: dict[str, object] = {}
    for i in range(n_images):
        img, objects = _render_image(rng, classes, hues)
        is_png = rng.random() < PNG_SHARE
        name = f"sample_{i:04d}.{'png' if is_png else 'jpg'}"
        if is_png:
            img.save(images_dir / name, format="PNG", optimize=False)
        else:
            img.save(images_dir / name, format="JPEG", quality=rng.randint(72, 95))
        images[name] = {"width": img.width, "height": img.height, "objects": objects}
    key = {"classes": classes, "images": images}
    (out_dir / "answer_key.json").write_text(json.dumps(key, indent=1, sort_keys=True) + "\n")
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `python -m emulator.sample_dataset OUT_DIR [--n 60] [--seed 0] [--classes a,b]`."""
    parser = argparse.ArgumentParser(
        prog="python -m emulator.sample_dataset", description=__doc__.split("\n")[0]
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n", type=int, default=60, help="number of images (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", default=",".join(DEFAULT_CLASSES), help="comma-separated class names")
    args = parser.parse_args(argv)
    try:
        out = generate_sample_dataset(args.out_dir, args.n, args.classes.split(","), args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out / "answer_key.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
