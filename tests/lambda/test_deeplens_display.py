"""The local project stream: JPEG frames written to a FIFO for a reader such as mplayer."""

from __future__ import annotations

import errno
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip(
    "numpy", reason="the device code needs numpy: run in the ML tools env (-c tests/lambda/pytest.ini)"
)
from PIL import Image  # noqa: E402

JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"


def read_jpegs(descriptor: int, count: int, timeout: float = 5.0) -> list[bytes]:
    """Read from the FIFO until ``count`` complete JPEG images arrived."""
    data = b""
    deadline = time.monotonic() + timeout
    while data.count(JPEG_END) < count:
        assert time.monotonic() < deadline, "no frames arrived on the FIFO"
        data += os.read(descriptor, 65536)
    images = []
    for chunk in data.split(JPEG_START)[1:]:
        end = chunk.find(JPEG_END)
        if end >= 0:
            images.append(JPEG_START + chunk[: end + 2])
    return images[:count]


@pytest.fixture
def display_module(device: Any):
    import deeplens_display

    yield deeplens_display
    sys.modules.pop("deeplens_display", None)


def test_frames_reach_a_reader_and_the_thread_stops(display_module, tmp_path: Path) -> None:
    fifo = tmp_path / "results.mjpeg"
    display = display_module.LocalDisplay(str(fifo), "480p")
    display.start()
    try:
        deadline = time.monotonic() + 5
        while not fifo.exists():  # the thread creates it
            assert time.monotonic() < deadline, "the display never created its FIFO"
            time.sleep(0.01)
        descriptor = os.open(fifo, os.O_RDONLY)  # blocks until the display opens its end
        try:
            (blank,) = read_jpegs(descriptor, 1)
            assert Image.open(io.BytesIO(blank)).size == (858, 480)
            red = np.zeros((1080, 1920, 3), dtype=np.uint8)
            red[:, :, 0] = 255
            display.set_frame_data(red)
            deadline = time.monotonic() + 5
            while True:
                (latest,) = read_jpegs(descriptor, 1)
                pixel = Image.open(io.BytesIO(latest)).convert("RGB").getpixel((400, 240))
                if pixel[0] > 200:
                    break
                assert time.monotonic() < deadline, "the new frame never reached the reader"
            assert Image.open(io.BytesIO(latest)).size == (858, 480)
        finally:
            os.close(descriptor)  # the reader goes away: the display waits for the next one
        time.sleep(0.2)
        assert display.is_alive()
    finally:
        display.stop()
        display.join(timeout=3)
    assert not display.is_alive()


def test_stop_while_waiting_for_a_reader(display_module, tmp_path: Path) -> None:
    display = display_module.LocalDisplay(str(tmp_path / "results.mjpeg"), "720p")
    display.start()
    time.sleep(0.1)
    display.stop()
    display.join(timeout=3)
    assert not display.is_alive()
    assert display.size == (1280, 720)


def test_refuses_a_regular_file_and_bad_resolution(display_module, tmp_path: Path) -> None:
    regular = tmp_path / "results.mjpeg"
    regular.write_bytes(b"not a fifo")
    display = display_module.LocalDisplay(str(regular))
    with pytest.raises(RuntimeError, match="is not a FIFO"):
        display._ensure_fifo()
    assert regular.read_bytes() == b"not a fifo"  # nothing lost
    with pytest.raises(ValueError, match="resolution '4k'"):
        display_module.LocalDisplay(str(tmp_path / "x"), "4k")


def test_write_all_handles_partial_writes(display_module, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[bytes] = []

    def short_write(descriptor: int, data) -> int:
        chunk = bytes(data[:3])
        written.append(chunk)
        return len(chunk)

    monkeypatch.setattr(display_module.os, "write", short_write)
    display_module._write_all(7, b"abcdefgh")
    assert b"".join(written) == b"abcdefgh"
    assert errno.EPIPE  # the error the writer survives when a reader leaves
