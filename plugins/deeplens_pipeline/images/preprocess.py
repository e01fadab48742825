"""One file in, one square RGB JPEG out (or a reject): the unit of work a process pool runs."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from deeplens_pipeline.images.decode import DecodeLimits, ImageRejected, decode_image
from deeplens_pipeline.images.geometry import SQUARE_MODES, SquareMode
from deeplens_pipeline.images.square import parse_colour, square_image

#: Bump when the pixels produced for the same options change; part of every output's fingerprint.
PIPELINE_VERSION = 1
#: What the fingerprint hashed for the decode limits while they were part of it: kept as a constant,
#: so the images made then are still current (the limits decide what is refused, not the pixels).
_FINGERPRINT_LIMITS = {"max_pixels": 100_000_000, "min_side": 16, "max_aspect": 10.0}


@dataclass(frozen=True)
class PreprocessOptions:
    """How every image of a run is made square.

    ``oversample`` is how many decoded pixels (at least) feed each output pixel when a JPEG is
    decoded at reduced size: 1.0 decodes at the smallest DCT scale that still covers the output.
    """

    size: int = 512
    mode: SquareMode = "letterbox"
    pad_colour: tuple[int, int, int] = (0, 0, 0)
    quality: int = 90
    oversample: float = 1.0
    limits: DecodeLimits = field(default_factory=DecodeLimits)

    def __post_init__(self) -> None:
        if not 16 <= int(self.size) <= 4096:
            raise ValueError(f"image size must be 16-4096 pixels, got {self.size!r}")
        if self.mode not in SQUARE_MODES:
            raise ValueError(f"square mode must be one of {SQUARE_MODES}, got {self.mode!r}")
        if not 1 <= int(self.quality) <= 100:
            raise ValueError(f"JPEG quality must be 1-100, got {self.quality!r}")
        if not 1.0 <= float(self.oversample) <= 8.0:
            raise ValueError(f"oversample must be 1-8, got {self.oversample!r}")
        object.__setattr__(self, "pad_colour", parse_colour(self.pad_colour))

    def fingerprint(self) -> str:
        """16 hex digits naming what shapes the output pixels: these options and the pipeline version
        (stored with every output). The decode limits are not part of it: they decide only which
        files are refused, so changing them redoes no image (see :meth:`rejects_fingerprint`)."""
        data = asdict(self) | {"limits": _FINGERPRINT_LIMITS, "version": PIPELINE_VERSION}
        return _digest(data)

    def rejects_fingerprint(self) -> str:
        """:meth:`fingerprint` and the decode limits: the ledger remembers a reject under it, so a
        file refused under one limit is tried again when the limit changes."""
        return _digest({"params": self.fingerprint(), "limits": asdict(self.limits)})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for shard specs and worker processes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessOptions:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        limits = data.pop("limits", None) or {}
        return cls(limits=DecodeLimits(**limits), **data)


def _digest(data: dict[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pixels_sha256(image: Image.Image, reduction: float) -> str:
    """SHA-256 of the decoded, oriented pixels (with their size and decode scale), read in bands of
    rows so no second copy of a big image is made (the digest equals that of ``tobytes()``)."""
    digest = hashlib.sha256(f"{image.size}:{reduction}:".encode())
    width, height = image.size
    rows = max(1, (4 << 20) // max(1, width * len(image.getbands())))
    for top in range(0, height, rows):
        digest.update(image.crop((0, top, width, min(height, top + rows))).tobytes())
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def preprocess_file(
    source: str | os.PathLike[str], output: str | os.PathLike[str], options: PreprocessOptions
) -> dict[str, Any]:
    """Decode ``source``, make it square and write the JPEG to ``output``.

    Returns a JSON-serialisable outcome: ``{"status": "ok", "transform": {...}, "pixels": sha256 of
    the oriented decoded pixels, "format", "notes", "bytes"}`` or ``{"status": "rejected", "kind",
    "reason"}``. A bad file never raises.
    """
    long_side = short_side = None
    needed = int(options.size * options.oversample)
    if options.mode == "letterbox":
        long_side = needed
    else:
        short_side = needed
    try:
        decoded = decode_image(
            source,
            min_long_side=long_side,
            min_short_side=short_side,
            background=options.pad_colour,
            limits=options.limits,
        )
        pixels = pixels_sha256(decoded.image, decoded.reduction)
        square, transform = square_image(decoded, options.size, options.mode, options.pad_colour)
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        square.save(output, "JPEG", quality=int(options.quality))
    except ImageRejected as rejected:
        return {"status": "rejected", "kind": rejected.kind, "reason": rejected.reason}
    except MemoryError:
        return {
            "status": "rejected",
            "kind": "decompression-bomb",
            "reason": "decompression-bomb: out of memory",
        }
    except Exception as exc:  # one broken file must never fail the batch
        return {
            "status": "rejected",
            "kind": "unreadable",
            "reason": f"unreadable: {type(exc).__name__}: {exc}",
        }
    return {
        "status": "ok",
        "transform": json.loads(transform.to_metadata()),
        "pixels": pixels,
        "format": decoded.format,
        "notes": decoded.notes,
        "bytes": Path(output).stat().st_size,
    }


# ---------------------------------------------------------------- process-pool entry points
# They live here, not beside the pool, so a worker imports Pillow and this module only (no boto3).

_worker_options: PreprocessOptions | None = None


def init_worker(options: dict[str, Any]) -> None:
    """Pool initializer: the run's options, once per worker process."""
    global _worker_options
    _worker_options = PreprocessOptions.from_dict(options)


def work(job: tuple[str, str]) -> dict[str, Any]:
    """Pool task: :func:`preprocess_file` of ``(source path, output path)`` with the worker's options."""
    if _worker_options is None:
        raise RuntimeError("init_worker was not called in this process")
    return preprocess_file(job[0], job[1], _worker_options)
