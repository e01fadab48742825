"""Why a file cannot become a training image: the reject kinds, their exception, the limits.

Pure Python (no Pillow), so the Airflow side can name kinds and limits without loading an image
library while the DAG file is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Reject kinds, in the order the rejects report ranks them (worst first).
REJECT_KINDS: tuple[str, ...] = (
    "decompression-bomb",
    "outside-source",
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


#: The default memory budget of one decode, in MiB (see :class:`DecodeLimits`).
DEFAULT_DECODE_MEMORY_MB = 512


@dataclass(frozen=True)
class DecodeLimits:
    """What decoding one file may cost, checked from its header before any pixel is decoded.

    ``memory_mb`` is the memory one decode may take, in MiB (2**20 bytes): the decoder's raster at
    the scale it will really decode (a JPEG bound for 512 px is decoded at up to 1/8 of its size),
    the decoder's own buffers (a progressive JPEG holds every DCT coefficient of the full image) and
    the copies the conversion to RGB makes (see :func:`deeplens_pipeline.images.decode.decode_cost`).
    A file that would need more is a ``decompression-bomb`` reject whose reason gives the cost; the
    limit follows what decoding costs, not a pixel count, so a 102-megapixel camera JPEG (about
    20 MiB at 1/8 scale) passes while a 90-megapixel RGBA PNG (about 700 MiB) does not. The
    decode runs in a worker process per core, so a shard's peak is about ``memory_mb`` times its
    processes. ``min_side`` and ``max_aspect`` reject absurd dimensions (1-pixel spacers, 1x20000
    strips).
    """

    memory_mb: int = DEFAULT_DECODE_MEMORY_MB
    min_side: int = 16
    max_aspect: float = 10.0

    def __post_init__(self) -> None:
        if self.memory_mb < 1 or self.min_side < 1 or self.max_aspect < 1:
            raise ValueError(f"invalid decode limits {self!r}")

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_mb) << 20
