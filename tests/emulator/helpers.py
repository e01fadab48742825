"""Small helpers the emulator's tests share."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable
from typing import Any


def wait_for_job(describe: Callable[[], dict[str, Any]], key: str, timeout: float = 120) -> dict[str, Any]:
    """Poll ``describe()`` until its ``key`` status is final (Completed, Failed or Stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = describe()
        if job[key] in ("Completed", "Failed", "Stopped"):
            return job
        time.sleep(0.2)
    raise AssertionError("job did not finish")


def tar_gz(members: dict[str, bytes]) -> bytes:
    """A gzip tar archive holding ``members`` (name → bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
