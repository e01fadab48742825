"""Fixtures for the images stage: an S3 client on the moto server, fresh buckets, photo factories."""

from __future__ import annotations

import io
import struct
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.config import Config
from PIL import Image, ImageDraw

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PHOTOS = FIXTURES / "photos"
GROUNDTRUTH = FIXTURES / "groundtruth"


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    """A boto3 S3 client on the emulator (no botocore retries: failures show at once)."""
    return boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, max_pool_connections=20),
    )


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    """A new, empty ``deeplens-`` bucket for one test."""
    name = f"deeplens-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name


class Calls:
    """Counts S3 API calls a client makes (a botocore event hook: the calls still happen)."""

    def __init__(self, client: Any) -> None:
        self.counts: dict[str, int] = {}
        client.meta.events.register("before-call.s3.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] = self.counts.get(model.name, 0) + 1

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)

    def reset(self) -> None:
        self.counts.clear()


@pytest.fixture
def calls(s3: Any) -> Calls:
    """Counts of the S3 operations ``s3`` performs."""
    return Calls(s3)


def scene(size: tuple[int, int] = (640, 480), seed: int = 0) -> Image.Image:
    """A small photo-like RGB image: gradient background and a few coloured shapes."""
    w, h = size
    im = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    draw = ImageDraw.Draw(im)
    colours = [(200, 30, 30), (30, 160, 40), (40, 60, 220), (230, 200, 20)]
    for i in range(3):
        x = (seed * 37 + i * w // 3) % max(1, w - w // 5)
        y = (seed * 53 + i * h // 4) % max(1, h - h // 5)
        draw.rectangle((x, y, x + w // 6, y + h // 6), fill=colours[(seed + i) % len(colours)])
    return im


def exif_bytes(orientation: int | None = None, **tags: Any) -> bytes:
    """EXIF with an orientation tag (and camera make/model)."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    exif[0x010F] = tags.get("make", "TestCam")
    exif[0x0110] = tags.get("model", "T-1")
    return exif.tobytes()


def write_jpeg(
    path: Path, im: Image.Image | None = None, orientation: int | None = None, **save: Any
) -> Path:
    """Save a JPEG (with EXIF orientation when given)."""
    im = im if im is not None else scene()
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "JPEG", quality=save.pop("quality", 92), exif=exif_bytes(orientation), **save)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_size(width: int, height: int, colour_type: int = 0) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (8-bit greyscale, or ``colour_type`` 6:
    RGBA) but whose data is tiny (a bomb's shape)."""
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    data = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")
    )


def big_jpeg(width: int, height: int) -> bytes:
    """A complete, valid baseline JPEG of ``width`` x ``height`` (YCbCr 4:2:0, mid grey), built
    without ever holding its pixels: the headers of a 16x16 JPEG Pillow wrote with the standard
    Huffman tables, the frame size patched, then one 4-byte MCU (four luma blocks and two chroma
    blocks, each "DC unchanged, end of block") per 16x16 pixels. libjpeg decodes every MCU, so its
    memory is that of a camera JPEG of this size (it depends on the size, not on the content):
    11648x8736 takes 1.6 MB and 0.2 s to make."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 128, 128)).save(buffer, "JPEG", quality=75, subsampling=2)
    data = buffer.getvalue()
    out, i = bytearray(data[:2]), 2
    while True:
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        segment = bytearray(data[i : i + 2 + length])
        if marker == 0xC0:  # SOF0: precision, then height and width
            segment[5:9] = struct.pack(">HH", height, width)
        out += segment
        i += 2 + length
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            break
    mcus = -(-width // 16) * -(-height // 16)
    # 001010 (DC diff 0, EOB) x 4 luma blocks, 00 00 x 2 chroma blocks = 32 bits, no 0xFF byte
    return bytes(out) + bytes([0x28, 0xA2, 0x8A, 0x00]) * mcus + b"\xff\xd9"


PEAK_PROBE = """
import json, sys
from deeplens_pipeline.images.preprocess import PreprocessOptions, preprocess_file
from deeplens_pipeline.images.rejects import DecodeLimits

def status(field):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(field + ":"))

options = PreprocessOptions(size=512, limits=DecodeLimits(memory_mb=int(sys.argv[3])))
try:  # reset the peak (VmHWM) to the present RSS: the imports' own peak is not the decode's
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
except OSError:
    pass
base = status("VmRSS")
outcome = preprocess_file(sys.argv[1], sys.argv[2], options)
print(json.dumps({"outcome": outcome, "peak": status("VmHWM") - base}))
"""


def measure_peak(path: Path, memory_mb: int = 512) -> tuple[dict[str, Any], int]:
    """``preprocess_file`` of one file in a fresh interpreter: (its outcome, the growth of the
    process's peak RSS (VmHWM, which unlike ``ru_maxrss`` does not carry the parent's peak over
    fork and exec) over its RSS just before, in bytes). Linux (reads /proc)."""
    import json
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[3]
    env = dict(os.environ, PYTHONPATH=f"{repo / 'plugins'}:{repo / 'include'}")
    out = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, str(path), str(path) + ".out.jpg", str(memory_mb)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["outcome"], int(result["peak"])


def bad_files(folder: Path) -> dict[str, str]:
    """Write one file of every reject kind into ``folder``; ``{file name: expected kind}``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    good = io.BytesIO()
    scene((800, 600)).save(good, "JPEG", quality=90)
    (folder / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (folder / "notes.jpg").write_text("these are my notes, not a photo\n")
    (folder / "bomb.png").write_bytes(png_with_size(12_000, 12_000))
    Image.new("RGB", (4000, 20), "white").save(folder / "strip.png")
    Image.new("F", (64, 64), 0.5).save(folder / "float.tif")
    return {
        "empty.jpg": "empty",
        "truncated.jpg": "truncated",
        "notes.jpg": "not-an-image",
        "bomb.png": "decompression-bomb",
        "strip.png": "absurd-dimensions",
        "float.tif": "unsupported-mode",
    }


@pytest.fixture
def photos(tmp_path: Path) -> Callable[..., Path]:
    """``photos(n, folder="src")``: a folder of ``n`` distinct small JPEGs named ``photo_XX.jpg``."""

    def make(n: int = 3, folder: str = "src", size: tuple[int, int] = (640, 480)) -> Path:
        root = tmp_path / folder
        for i in range(n):
            write_jpeg(root / f"photo_{i:02d}.jpg", scene(size, seed=i + 1), orientation=1)
        return root

    return make


def groundtruth_line(photo_name: str) -> str:
    """The real Ground Truth output line of a fixture photo, found by file name."""
    for manifest in sorted(GROUNDTRUTH.glob("*.manifest")):
        for line in manifest.read_text().splitlines():
            if f'/{photo_name}"' in line:
                return line
    raise LookupError(photo_name)


@pytest.fixture
def make() -> SimpleNamespace:
    """The factories above, for tests (conftest modules are not importable by name)."""
    return SimpleNamespace(
        scene=scene,
        exif_bytes=exif_bytes,
        write_jpeg=write_jpeg,
        png_with_size=png_with_size,
        png_chunk=png_chunk,
        big_jpeg=big_jpeg,
        measure_peak=measure_peak,
        bad_files=bad_files,
        groundtruth_line=groundtruth_line,
        Calls=Calls,
        PHOTOS=PHOTOS,
        swapped_rgb_profile=swapped_rgb_profile,
    )


def swapped_rgb_profile() -> bytes:
    """A valid ICC v2 RGB display profile whose red and blue primaries are swapped.

    Built by hand (no ICC file ships with the test environment): pixels tagged with it are, in
    sRGB, the same colour with red and blue exchanged, which makes a conversion plainly visible.
    """

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)

    def curve(gamma: float) -> bytes:
        return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"

    def desc(text: str) -> bytes:
        ascii_text = text.encode() + b"\0"
        return (
            b"desc\0\0\0\0"
            + struct.pack(">I", len(ascii_text))
            + ascii_text
            + b"\0" * 8
            + b"\0\0\0"
            + b"\0" * 67
        )

    red, green, blue = (0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)
    tags = [
        (b"desc", desc("Swapped red-blue test RGB")),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(*blue)),
        (b"gXYZ", xyz(*green)),
        (b"bXYZ", xyz(*red)),
        (b"rTRC", curve(2.2)),
        (b"gTRC", curve(2.2)),
        (b"bTRC", curve(2.2)),
        (b"cprt", b"text\0\0\0\0" + b"public domain\0\0\0"),
    ]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table, data = struct.pack(">I", len(tags)), b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = 128 + table_size + len(data)
    header = (
        struct.pack(">I", size)
        + b"\0\0\0\0"
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + table + data
