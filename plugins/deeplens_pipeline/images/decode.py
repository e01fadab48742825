"""Safe decoding: validate a file, decode it small when the format allows, orient it, make it RGB.

Every way a file can be unusable raises :class:`ImageRejected` with a ``kind`` from
:data:`REJECT_KINDS`; nothing else escapes :func:`decode_image` for a bad file.

Speed comes from Pillow itself: ``Image.draft`` makes libjpeg decode a JPEG at 1/2, 1/4 or 1/8 of its
size (DCT scaling), so a 12 MP photo bound for 512 px is decoded as ~0.75 MP; orientation and colour
conversion then run on the small image.

Memory is checked before decoding: :func:`decode_cost` computes, from the header, what this decode
will really hold at its peak (format, mode, draft scale, progressive JPEG buffers, the conversion's
copies), and a file over :attr:`DecodeLimits.memory_mb` is refused with the cost in its reason.
Pillow's own fixed pixel limit is set aside while we open a file: it would refuse a 200-megapixel
phone JPEG that decodes in 20 MiB at 1/8 scale, and our check covers every file it would have.
"""

from __future__ import annotations

import io
import math
import os
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageCms, UnidentifiedImageError

from deeplens_pipeline.images.geometry import oriented_size
from deeplens_pipeline.images.rejects import REJECT_KINDS, DecodeLimits, ImageRejected

ORIENTATION_TAG = 0x0112

#: Image modes we can turn into 8-bit RGB faithfully.
SUPPORTED_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "I;16", "I;16L"}
    | {"I;16B", "I;16N"}
)

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

#: Bytes a pixel takes in Pillow's raster: multi-band 8-bit modes (RGB too) and 32-bit ones take 4.
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
#: Extra bytes a pixel that :func:`_to_rgb` holds at its peak beside the decoded raster, per mode:
#: one RGB copy (4), or an RGBA copy and the flattened RGB (8), or the 32-bit steps of 16-bit grey.
_CONVERT_BYTES = {"RGB": 0, "RGBA": 4, "LA": 8, "La": 8, "RGBa": 8, "PA": 8, "I": 8}
#: Formats whose library reads the whole file and decodes into buffers of its own that Pillow then
#: copies, in rasters of the decoded size: libwebp's animation decoder keeps two canvases and hands
#: Pillow a third copy; libheif and libavif one.
_DECODER_COPIES = {"WEBP": 3, "HEIF": 1, "AVIF": 1}
#: The output square, the encoder and small working images, whatever the source.
DECODE_MARGIN = 16 << 20
_MiB = 1 << 20

_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif")
_heif_registered = False


@dataclass
class Decoded:
    """An oriented RGB image, possibly decoded at ``1/reduction`` of the source size."""

    image: Image.Image
    raw_size: tuple[int, int]
    size: tuple[int, int]
    orientation: int
    reduction: float
    format: str
    notes: list[str] = field(default_factory=list)


def register_heif() -> bool:
    """Register pillow-heif's HEIC/HEIF opener once; False when the plugin is not installed."""
    global _heif_registered
    if not _heif_registered:
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            return False
        register_heif_opener()
        _heif_registered = True
    return True


def looks_like_heif(head: bytes) -> bool:
    """True when the first bytes are an ISO-BMFF ``ftyp`` box of a HEIF/AVIF brand."""
    return len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def decode_image(
    path: str | os.PathLike[str],
    *,
    min_long_side: int | None = None,
    min_short_side: int | None = None,
    background: tuple[int, int, int] = (0, 0, 0),
    limits: DecodeLimits | None = None,
) -> Decoded:
    """Validate and decode ``path`` into an oriented RGB image.

    ``min_long_side``/``min_short_side`` (in oriented pixels) let a JPEG be decoded in draft mode at
    the smallest DCT scale that still gives at least that many pixels; ``background`` is what
    transparent pixels are flattened onto. Raises :class:`ImageRejected` for unusable files.
    """
    limits = limits or DecodeLimits()
    path = Path(path)
    try:
        size_bytes = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ImageRejected("unreadable", f"cannot read the file ({exc.strerror or exc})") from exc
    if size_bytes == 0:
        raise ImageRejected("empty", "the file has zero bytes")
    if looks_like_heif(head):
        register_heif()

    with warnings.catch_warnings(), _own_bomb_check():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise ImageRejected("decompression-bomb", str(exc)) from exc
        except UnidentifiedImageError as exc:
            raise ImageRejected("not-an-image", "Pillow cannot identify the file as an image") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageRejected("not-an-image", f"unreadable header ({exc})") from exc
        try:
            decoded = _decode_opened(im, path, size_bytes, min_long_side, min_short_side, background, limits)
        except BaseException:
            im.close()
            raise
        if decoded.image is not im:
            im.close()  # releases the source pixels and, for multi-frame files, the file handle
        return decoded


_pillow_limit = threading.Lock()


@contextmanager
def _own_bomb_check() -> Iterator[None]:
    """Set Pillow's fixed pixel limit aside: :func:`decode_cost` decides, from what decoding costs."""
    with _pillow_limit:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _decode_opened(
    im: Image.Image,
    path: Path,
    file_bytes: int,
    min_long_side: int | None,
    min_short_side: int | None,
    background: tuple[int, int, int],
    limits: DecodeLimits,
) -> Decoded:
    notes: list[str] = []
    fmt = im.format or "unknown"
    raw_w, raw_h = full = im.size
    _check_dimensions(raw_w, raw_h, limits)
    if im.mode not in SUPPORTED_MODES:
        raise ImageRejected("unsupported-mode", f"{fmt} image in mode {im.mode!r} is not a photograph format")
    if getattr(im, "n_frames", 1) > 1:
        notes.append(f"first of {im.n_frames} frames used")

    orientation, already_oriented = _orientation(im, notes, path)
    if already_oriented:  # pillow-heif applies the HEIF transformations itself
        raw_w, raw_h = oriented_size(raw_w, raw_h, orientation)
    reduction = _draft(im, min_long_side, min_short_side)  # DCT scaling: both axes alike
    rotate = orientation != 1 and not already_oriented
    cost = decode_cost(im, full, rotate, file_bytes)
    if cost.total > limits.memory_bytes:
        raise ImageRejected(
            "decompression-bomb",
            f"{full[0]}x{full[1]} {fmt} ({im.mode}) would need {cost.describe()} to decode, over the "
            f"limit of {limits.memory_mb} MiB (decode_memory_mb)",
        )
    icc = im.info.get("icc_profile")
    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise ImageRejected("decompression-bomb", str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        message = str(exc)
        kind = "truncated" if "truncated" in message or isinstance(exc, EOFError) else "unreadable"
        raise ImageRejected(kind, f"decoding failed ({message})") from exc

    rgb = _to_rgb(im, background, icc, notes)
    if rotate:
        if rgb is not im:
            im.close()  # the decoded raster is no longer needed: the turned copy does not sit beside it
        rgb = rgb.transpose(_TRANSPOSE[orientation])
    ow, oh = oriented_size(raw_w, raw_h, orientation)
    return Decoded(
        image=rgb,
        raw_size=(raw_w, raw_h),
        size=(int(ow), int(oh)),
        orientation=orientation,
        reduction=reduction,
        format=fmt,
        notes=notes,
    )


@dataclass(frozen=True)
class DecodeCost:
    """Bytes one decode holds at its peak: Pillow's raster at the decoded size, what the decoder
    library holds beside it (``decoder``) and what converting to RGB and orienting adds (``convert``)."""

    raster: int
    decoder: int
    convert: int
    margin: int = DECODE_MARGIN

    @property
    def total(self) -> int:
        return self.raster + max(self.decoder, self.convert) + self.margin

    def describe(self) -> str:
        parts = [f"{self.raster / _MiB:.0f} MiB of pixels"]
        if self.decoder:
            parts.append(f"{self.decoder / _MiB:.0f} MiB of decoder buffers")
        if self.convert:
            parts.append(f"{self.convert / _MiB:.0f} MiB to convert")
        parts.append(f"{self.margin / _MiB:.0f} MiB to work")
        return f"{self.total / _MiB:.0f} MiB ({', '.join(parts)})"


def pixel_bytes(mode: str) -> int:
    """Bytes a pixel of ``mode`` takes in Pillow's memory."""
    return _PIXEL_BYTES.get(mode, 4)


def decode_cost(
    im: Image.Image, full_size: tuple[int, int], rotate: bool = False, file_bytes: int = 0
) -> DecodeCost:
    """What decoding ``im`` (opened, drafted, not loaded) will hold in memory at its peak.

    ``full_size`` is the stored size before any draft, ``rotate`` whether the EXIF orientation
    turns the image, ``file_bytes`` the file's size. Checked against the peak RSS of real decodes
    in ``tests/deeplens_pipeline/images/test_decode.py``: never under it, at most ~1.5x over.
    """
    w, h = im.size
    pixels = w * h
    raster = pixels * pixel_bytes(im.mode)
    decoder = 0
    if im.format in {"JPEG", "MPO"} and im.info.get("progressive"):
        decoder = _jpeg_coefficients(im, full_size)
    elif im.format in _DECODER_COPIES:
        decoder = _DECODER_COPIES[im.format] * pixels * 4 + file_bytes
    mode = im.mode
    if mode == "P":
        extra = 8 if "transparency" in im.info else 4
    elif mode.startswith("I;16"):
        extra = 8
    else:
        extra = _CONVERT_BYTES.get(mode, 4)
    convert = extra * pixels
    if rotate:  # the RGB image and its turned copy; the raster is let go first when it is another image
        convert = max(convert, 8 * pixels - raster)
    return DecodeCost(raster=raster, decoder=decoder, convert=convert)


def _jpeg_coefficients(im: Image.Image, full_size: tuple[int, int]) -> int:
    """Bytes of the DCT coefficients libjpeg keeps for a progressive JPEG: every block of every
    component at full resolution, 64 coefficients of 2 bytes, whatever the draft scale."""
    width, height = full_size
    layers = getattr(im, "layer", None) or [("1", 1, 1, 0)] * max(1, len(im.getbands()))
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    total = 0
    for _, h_samp, v_samp, _q in layers:
        blocks_w = math.ceil(math.ceil(width * h_samp / h_max) / 8)
        blocks_h = math.ceil(math.ceil(height * v_samp / v_max) / 8)
        blocks_w += -blocks_w % max(1, h_samp)
        blocks_h += -blocks_h % max(1, v_samp)
        total += blocks_w * blocks_h * 128
    return total


def _check_dimensions(w: int, h: int, limits: DecodeLimits) -> None:
    if min(w, h) < limits.min_side:
        raise ImageRejected("absurd-dimensions", f"{w}x{h}: a side is under {limits.min_side} pixels")
    if max(w, h) / min(w, h) > limits.max_aspect:
        raise ImageRejected(
            "absurd-dimensions", f"{w}x{h}: aspect ratio over {limits.max_aspect:g}:1 is not a photograph"
        )


def _orientation(im: Image.Image, notes: list[str], path: Path | None = None) -> tuple[int, bool]:
    """(EXIF orientation, whether the decoder already applied it), read without decoding a pixel."""
    original = im.info.get("original_orientation")
    if original is not None:  # pillow-heif reset the tag after applying it
        return (int(original) if int(original) in range(1, 9) else 1), True
    if im.format == "PNG" and "exif" not in im.info and path is not None:
        # Pillow's PNG getexif() decodes the whole image to reach an eXIf chunk stored after the
        # pixels; read that chunk from the file instead, before the cost of decoding is checked.
        im.info["exif"] = _png_late_exif(path)
    try:
        value = im.getexif().get(ORIENTATION_TAG, 1)
    except Exception as exc:  # a corrupt EXIF block must not lose the image
        notes.append(f"EXIF unreadable ({exc}); orientation 1 assumed")
        return 1, False
    try:
        orientation = int(value)
    except (TypeError, ValueError):
        orientation = 0
    if orientation not in range(1, 9):
        notes.append(f"invalid EXIF orientation {value!r}; 1 assumed")
        return 1, False
    return orientation, False


def _png_late_exif(path: Path) -> bytes:
    """The eXIf chunk of a PNG file (b"" when none), found by skipping from chunk header to header."""
    try:
        with path.open("rb") as fh:
            fh.seek(8)
            while len(head := fh.read(8)) == 8:
                length, kind = struct.unpack(">I4s", head)
                if kind == b"eXIf":
                    return fh.read(min(length, 1 << 20))
                if kind == b"IEND":
                    break
                fh.seek(length + 4, os.SEEK_CUR)
    except OSError:
        pass
    return b""


def _draft(im: Image.Image, min_long_side: int | None, min_short_side: int | None) -> float:
    """Ask the decoder for a reduced-size decode; returns the reduction factor (1 when none)."""
    if im.format not in {"JPEG", "MPO"} or not (min_long_side or min_short_side):  # MPO: phones' JPEGs
        return 1.0
    raw_w, raw_h = im.size
    factor = math.inf
    if min_long_side:
        factor = min(factor, max(raw_w, raw_h) / min_long_side)
    if min_short_side:
        factor = min(factor, min(raw_w, raw_h) / min_short_side)
    if factor < 2:
        return 1.0
    request = (max(1, math.ceil(raw_w / factor)), max(1, math.ceil(raw_h / factor)))
    result = im.draft("RGB", request)
    if result is None:
        return 1.0
    _, box = result
    return raw_w / box[2]


def _to_rgb(
    im: Image.Image, background: tuple[int, int, int], icc: bytes | None, notes: list[str]
) -> Image.Image:
    mode = im.mode
    if mode.startswith("I"):
        im = _sixteen_to_eight(im)
        mode = im.mode
    if icc:
        converted = _icc_to_srgb(im, icc, notes)
        if converted is not None:
            im, mode = converted, converted.mode
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in {"LA", "La", "PA", "RGBA", "RGBa"}:
        rgba = im if mode == "RGBA" else im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, background)
        flat.paste(rgba, mask=rgba)  # an RGBA mask is its alpha band: no copy of the band
        return flat
    if mode == "RGB":
        return im
    return im.convert("RGB")


def _sixteen_to_eight(im: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer grey to 8 bits (``convert`` would clip everything over 255 to white)."""
    wide = im if im.mode == "I" else im.convert("I")
    _, high = wide.getextrema()
    if im.mode.startswith("I;16") or high > 255:
        wide = wide.point(lambda v: v * (1 / 257))
    return wide.convert("L")


def _icc_to_srgb(im: Image.Image, icc: bytes, notes: list[str]) -> Image.Image | None:
    """Convert pixels in an embedded colour profile to sRGB; None when already sRGB or impossible."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = ImageCms.getProfileDescription(profile).strip()
    except (ImageCms.PyCMSError, OSError, TypeError) as exc:
        notes.append(f"embedded colour profile unreadable ({exc}); pixels kept as they are")
        return None
    if "srgb" in description.lower():
        return None
    source_mode = im.mode if im.mode in {"RGB", "CMYK", "L"} else None
    if source_mode is None:
        return None
    try:
        return ImageCms.profileToProfile(im, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, ValueError, OSError) as exc:
        notes.append(f"colour profile {description!r} not applied ({exc})")
        return None


__all__ = [
    "REJECT_KINDS",
    "SUPPORTED_MODES",
    "DecodeCost",
    "DecodeLimits",
    "Decoded",
    "ImageRejected",
    "decode_cost",
    "decode_image",
    "looks_like_heif",
    "register_heif",
]
