"""Pure geometry of the preprocessing: EXIF orientation, letterbox or centre crop, scale.

Coordinates are continuous pixel coordinates: an image of width ``w`` spans ``0 <= x <= w``, the
centre of its first pixel is at 0.5. Two frames matter:

* the *raw* frame: pixels as stored in the file, before the EXIF orientation is applied;
* the *oriented* frame: what a viewer shows after ``ImageOps.exif_transpose``.

A :class:`Transform` maps the oriented frame to the square output: ``(x, y) -> (x*s + dx, y*s + dy)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Literal

#: The input sizes the DeepLens object-detection model is trained at.
IMAGE_SHAPES: tuple[int, ...] = (300, 480, 512)

SquareMode = Literal["letterbox", "crop"]
SQUARE_MODES: tuple[str, ...] = ("letterbox", "crop")

#: EXIF orientations (1-8) whose transposition swaps width and height.
SWAPS_AXES = frozenset({5, 6, 7, 8})
_EPS = 1e-6  # float slack when a scaled side should be a whole number of pixels


def oriented_size(raw_w: float, raw_h: float, orientation: int) -> tuple[float, float]:
    """Size of the image once ``orientation`` (EXIF 1-8) is applied."""
    check_orientation(orientation)
    return (raw_h, raw_w) if orientation in SWAPS_AXES else (raw_w, raw_h)


def check_orientation(orientation: int) -> None:
    """Raise ValueError unless ``orientation`` is an EXIF orientation value 1-8."""
    if orientation not in range(1, 9):
        raise ValueError(f"EXIF orientation must be 1-8, got {orientation!r}")


def orient_point(x: float, y: float, raw_w: float, raw_h: float, orientation: int) -> tuple[float, float]:
    """Map a point of the raw frame to the oriented frame (what ``exif_transpose`` does to pixels)."""
    check_orientation(orientation)
    w, h = raw_w, raw_h
    return {
        1: (x, y),
        2: (w - x, y),  # mirror horizontal
        3: (w - x, h - y),  # rotate 180
        4: (x, h - y),  # mirror vertical
        5: (y, x),  # transpose
        6: (h - y, x),  # rotate 90 clockwise
        7: (h - y, w - x),  # transverse
        8: (y, w - x),  # rotate 90 counter-clockwise
    }[orientation]


@dataclass(frozen=True)
class Transform:
    """Oriented source -> square output: ``(x, y) -> (x*scale + dx, y*scale + dy)``.

    ``w``/``h`` are the oriented source size, ``orientation`` the EXIF value that was applied,
    ``size`` the side of the square output. Crop gives negative offsets.
    """

    w: int
    h: int
    orientation: int
    scale: float
    dx: float
    dy: float
    size: int

    def apply(self, x: float, y: float) -> tuple[float, float]:
        """Map an oriented-frame point to the output."""
        return x * self.scale + self.dx, y * self.scale + self.dy

    def source_box(self) -> tuple[float, float, float, float]:
        """The oriented-frame rectangle that lands exactly on the output square (may exceed the image)."""
        s = self.scale
        return (-self.dx / s, -self.dy / s, (self.size - self.dx) / s, (self.size - self.dy) / s)

    def content_box(self) -> tuple[int, int, int, int]:
        """The whole output pixels lying inside the image (the rest is padding); the square for crop."""
        x0, y0 = self.apply(0, 0)
        x1, y1 = self.apply(self.w, self.h)

        def clip(v: float) -> int:
            return min(self.size, max(0, v))

        return (
            clip(math.ceil(x0 - _EPS)),
            clip(math.ceil(y0 - _EPS)),
            clip(math.floor(x1 + _EPS)),
            clip(math.floor(y1 + _EPS)),
        )

    def to_metadata(self) -> str:
        """Compact JSON for the ``deeplens-transform`` S3 metadata value."""
        return json.dumps(asdict(self), separators=(",", ":"))  # fields in w, h, orientation, ... order

    @classmethod
    def from_metadata(cls, text: str) -> Transform:
        """Parse a ``deeplens-transform`` value (the inverse of :meth:`to_metadata`)."""
        d = json.loads(text)
        return cls(
            w=int(d["w"]),
            h=int(d["h"]),
            orientation=int(d["orientation"]),
            scale=float(d["scale"]),
            dx=float(d["dx"]),
            dy=float(d["dy"]),
            size=int(d["size"]),
        )


def plan_square(w: int, h: int, size: int, mode: SquareMode = "letterbox", orientation: int = 1) -> Transform:
    """The transform that makes an oriented ``w`` x ``h`` image a ``size`` square.

    Letterbox scales the long side to ``size`` and centres the image on whole-pixel offsets (the short
    side covers ``floor(h*s)`` output pixels, so the image never reaches into a padding pixel); crop
    scales the short side to ``size`` and keeps the centre (offsets may be fractional).
    """
    if w <= 0 or h <= 0:
        raise ValueError(f"image size must be positive, got {w}x{h}")
    if size <= 0:
        raise ValueError(f"output size must be positive, got {size}")
    check_orientation(orientation)
    if mode == "letterbox":
        scale = size / max(w, h)
        content_w, content_h = math.floor(w * scale + _EPS), math.floor(h * scale + _EPS)
        dx, dy = float((size - content_w) // 2), float((size - content_h) // 2)
    elif mode == "crop":
        scale = size / min(w, h)
        dx, dy = (size - w * scale) / 2, (size - h * scale) / 2
    else:
        raise ValueError(f"square mode must be one of {SQUARE_MODES}, got {mode!r}")
    return Transform(w=w, h=h, orientation=orientation, scale=scale, dx=dx, dy=dy, size=size)
