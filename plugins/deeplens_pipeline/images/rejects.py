"""Why a file cannot become a training image: the reject kinds, their exception, the limits.

Pure Python (no Pillow), so the Airflow side can name kinds and limits without loading an image
library while the DAG file is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Reject kinds, in the order the rejects report ranks them (worst first).
REJECT_KINDS: tuple[str, ...] = (
    "decompression-bomb",
    "not-an-image",
    "truncated",
    "unreadable",
    "empty",
    "absurd-dimensions",
    "unsupported-mode",
)


class ImageRejected(Exception):
    """A file that cannot become a training image; ``kind`` is one of :data:`REJECT_KINDS`."""

    def __init__(self, kind: str, detail: str) -> None:
        if kind not in REJECT_KINDS:
            raise ValueError(f"unknown reject kind {kind!r}")
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail

    @property
    def reason(self) -> str:
        """``"<kind>: <detail>"``, the text of the rejects report."""
        return str(self)


@dataclass(frozen=True)
class DecodeLimits:
    """What a file may claim before it is decoded.

    ``max_pixels`` guards against decompression bombs (checked from the header, before any pixel
    is decoded; Pillow's own hard limit, twice ``Image.MAX_IMAGE_PIXELS``, still applies above it);
    ``min_side`` and ``max_aspect`` reject absurd dimensions (1-pixel spacers, 1x20000 strips).
    """

    max_pixels: int = 100_000_000
    min_side: int = 16
    max_aspect: float = 10.0

    def __post_init__(self) -> None:
        if self.max_pixels < 1 or self.min_side < 1 or self.max_aspect < 1:
            raise ValueError(f"invalid decode limits {self!r}")
