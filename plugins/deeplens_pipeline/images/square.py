"""Make a decoded image square: letterbox (pad) or centre crop, resampled once with a high-quality filter."""

from __future__ import annotations

from PIL import Image, ImageColor

from deeplens_pipeline.images.decode import Decoded
from deeplens_pipeline.images.geometry import SquareMode, Transform, plan_square

#: Pillow's reducing_gap: first an integer box reduction, then the filter over at most 3x; Pillow's
#: documentation calls the result indistinguishable from a full-resolution resample.
REDUCING_GAP = 3.0


def parse_colour(value: object) -> tuple[int, int, int]:
    """A pad colour from ``"#7f7f7f"``, ``"gray"``, ``"127,127,127"`` or a sequence of three ints."""
    if isinstance(value, str):
        text = value.strip()
        if "," in text:
            parts = [p.strip() for p in text.strip("()[] ").split(",")]
            return parse_colour(parts)
        try:
            rgb = ImageColor.getrgb(text)
        except ValueError as exc:
            raise ValueError(f"pad colour {value!r} is not a colour Pillow knows") from exc
        return int(rgb[0]), int(rgb[1]), int(rgb[2])
    if isinstance(value, list | tuple) and len(value) == 3:
        try:
            rgb = tuple(int(v) for v in value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"pad colour {value!r} must be three integers 0-255") from exc
        if all(0 <= v <= 255 for v in rgb):
            return rgb[0], rgb[1], rgb[2]
    raise ValueError(f"pad colour {value!r} must be '#rrggbb', a colour name or three integers 0-255")


def _inside(box: tuple[float, float, float, float], w: int, h: int) -> tuple[float, float, float, float]:
    """Clamp float noise (the box is inside the image up to rounding) to the image's bounds."""
    x0, y0, x1, y1 = box
    return max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)


def square_image(
    decoded: Decoded,
    size: int,
    mode: SquareMode = "letterbox",
    pad_colour: tuple[int, int, int] = (0, 0, 0),
    resample: Image.Resampling = Image.Resampling.LANCZOS,
) -> tuple[Image.Image, Transform]:
    """Return the ``size`` x ``size`` RGB image and the exact transform from the oriented source.

    The resample uses Pillow's ``box`` argument so the mapping is exact even when the decoder
    delivered a reduced image or the letterboxed content size was rounded.
    """
    w, h = decoded.size
    t = plan_square(w, h, size, mode, decoded.orientation)
    k = decoded.reduction
    limit_w, limit_h = decoded.image.size
    if mode == "letterbox":
        x0, y0, x1, y1 = t.content_box()
        content_w, content_h = x1 - x0, y1 - y0
        box = _inside((0.0, 0.0, content_w / t.scale / k, content_h / t.scale / k), limit_w, limit_h)
        content = decoded.image.resize((content_w, content_h), resample, box=box, reducing_gap=REDUCING_GAP)
        if (content_w, content_h) == (size, size):
            out = content
        else:
            out = Image.new("RGB", (size, size), pad_colour)
            out.paste(content, (x0, y0))
    else:
        sx0, sy0, sx1, sy1 = t.source_box()
        box = _inside((sx0 / k, sy0 / k, sx1 / k, sy1 / k), limit_w, limit_h)
        out = decoded.image.resize((size, size), resample, box=box, reducing_gap=REDUCING_GAP)
    out.info = {}
    return out, t
