"""The local project stream: annotated frames written as MJPEG to a FIFO, from a thread.

As in the AWS DeepLens samples' ``LocalDisplay``, a reader on the device plays it with
``mplayer -demuxer lavf -lavfdopts format=mjpeg:probesize=32 /tmp/results.mjpeg``.
Differences from the sample: the FIFO is opened in binary mode (the sample's text mode fails
under Python 3), waiting for a reader never blocks ``stop()``, and a reader that goes away is
waited for again instead of ending the stream.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

import cv2
import numpy as np
from deeplens_logic import DISPLAY_RESOLUTIONS

_READER_POLL_SECONDS = 0.5


class LocalDisplay(threading.Thread):
    """Writes the latest JPEG frame to a FIFO for as long as a reader is attached."""

    def __init__(self, fifo_path, resolution="480p"):
        super().__init__(name="deeplens-local-display", daemon=True)
        if resolution not in DISPLAY_RESOLUTIONS:
            raise ValueError(f"resolution {resolution!r} is not one of {sorted(DISPLAY_RESOLUTIONS)}")
        self.fifo_path = fifo_path
        self.size = DISPLAY_RESOLUTIONS[resolution]
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        blank = np.full((self.size[1], self.size[0], 3), 255, dtype=np.uint8)
        self._jpeg = self._encode(blank)

    def _encode(self, frame):
        ok, jpeg = cv2.imencode(".jpg", frame)
        if not ok:
            raise RuntimeError("cv2.imencode could not encode the frame as JPEG")
        return bytes(jpeg.tobytes() if hasattr(jpeg, "tobytes") else jpeg)

    def set_frame_data(self, frame):
        """Replace the streamed image with ``frame`` (a BGR array), resized to the stream size."""
        jpeg = self._encode(cv2.resize(frame, self.size))
        with self._lock:
            self._jpeg = jpeg

    def stop(self):
        """Ask the thread to finish; it does within about half a second."""
        self._stop_event.set()

    def run(self):
        self._ensure_fifo()
        while not self._stop_event.is_set():
            descriptor = self._open_when_read()
            if descriptor is None:
                return
            try:
                while not self._stop_event.is_set():
                    with self._lock:
                        jpeg = self._jpeg
                    _write_all(descriptor, jpeg)
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.EAGAIN):
                    raise
            finally:
                os.close(descriptor)

    def _ensure_fifo(self):
        path = Path(self.fifo_path)
        if path.exists():
            if not stat.S_ISFIFO(path.stat().st_mode):
                raise RuntimeError(
                    f"{self.fifo_path} exists and is not a FIFO; remove it or set DEEPLENS_RESULTS_FIFO"
                )
        else:
            os.mkfifo(self.fifo_path)

    def _open_when_read(self):
        """Open the FIFO for writing once a reader is attached; ``None`` if stopped first."""
        while not self._stop_event.is_set():
            try:
                descriptor = os.open(self.fifo_path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
                self._stop_event.wait(_READER_POLL_SECONDS)
                continue
            os.set_blocking(descriptor, True)
            return descriptor
        return None


def _write_all(descriptor, data):
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]
