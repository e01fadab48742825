"""Copy the weights file fast and with flat memory, in the background while the graph is fixed.

``copy_file`` asks the kernel to copy (``copy_file_range``): on file systems that share extents
(XFS with reflink, Btrfs, bcachefs, ZFS 2.2+) that is a copy-on-write clone, no data is written
and the original stays safe from later in-place writes to the copy; elsewhere (ext4) it is an
in-kernel copy with no round trip through Python. Other platforms, or a kernel that refuses,
get ``shutil.copyfileobj``. Hand-written because Python 3.11's ``shutil.copyfile`` uses
``sendfile``, which never clones, and cannot be cancelled.

``BackgroundCopy`` runs that copy in a thread (the kernel call releases the GIL, so it overlaps
the graph work on another core) into a partial file that only ``finish`` renames into place.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

#: Bytes per kernel call: small enough that a cancelled copy stops within milliseconds.
CHUNK = 16 << 20
# Errors meaning "this kernel or file system cannot copy_file_range these files": fall back.
_FALLBACK_ERRNOS = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM, errno.EIO}
)


class CopyCancelledError(Exception):
    """Raised inside the copying thread when :meth:`BackgroundCopy.cancel` stopped it."""


def copy_file(source: str | Path, destination: str | Path, cancelled: threading.Event | None = None) -> int:
    """Copy ``source`` to ``destination`` (created or truncated) and return the bytes copied.

    Raises :class:`CopyCancelledError` when ``cancelled`` gets set, ``OSError`` when the copy
    fails or the source changes size while it is copied.
    """
    with open(source, "rb") as src, open(destination, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        copied = 0
        if hasattr(os, "copy_file_range"):
            try:
                while copied < size:
                    if cancelled is not None and cancelled.is_set():
                        raise CopyCancelledError(str(source))
                    step = os.copy_file_range(src.fileno(), dst.fileno(), min(CHUNK, size - copied))
                    if step == 0:
                        break
                    copied += step
            except OSError as exc:
                if copied or exc.errno not in _FALLBACK_ERRNOS:
                    raise
        if copied == 0 and size:
            src.seek(0)
            dst.seek(0)
            while chunk := src.read(1 << 20):
                if cancelled is not None and cancelled.is_set():
                    raise CopyCancelledError(str(source))
                dst.write(chunk)
            copied = dst.tell()
        if copied != size:
            raise OSError(errno.EIO, f"{source} changed size while it was copied ({copied} of {size} bytes)")
        return copied


class BackgroundCopy:
    """Copy ``source`` to ``partial`` in a thread; ``finish`` renames it to its final name.

    Use ``cancel`` on every path that does not reach ``finish``: it stops the copy and removes
    the partial file, so an error never leaves a half-written weights file behind.
    """

    def __init__(self, source: Path, partial: Path) -> None:
        self.source = source
        self.partial = partial
        self._cancelled = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"copy {source.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            copy_file(self.source, self.partial, self._cancelled)
        except BaseException as exc:  # handed to the caller by finish()
            self._error = exc

    def finish(self, destination: Path) -> Path:
        """Wait for the copy, then move it to ``destination``; raise what the copy raised."""
        self._thread.join()
        if self._error is not None:
            self.partial.unlink(missing_ok=True)
            raise self._error
        self.partial.replace(destination)
        return destination

    def cancel(self) -> None:
        """Stop the copy (if running) and remove the partial file."""
        self._cancelled.set()
        self._thread.join()
        self.partial.unlink(missing_ok=True)


def link_or_copy(source: Path, destination: Path) -> None:
    """Hard-link ``source`` at ``destination``, else copy it (for private staging folders only)."""
    try:
        os.link(source, destination)
    except OSError:
        copy_file(source, destination)
