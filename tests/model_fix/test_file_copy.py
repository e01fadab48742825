"""The weights copy: kernel copy with a fallback, cancellable, and never left half-written."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from model_fix import file_copy
from model_fix.file_copy import BackgroundCopy, CopyCancelledError, copy_file, link_or_copy


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "weights.params"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return path


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_copy, "CHUNK", 1 << 20)


def test_copies_every_byte(source: Path, tmp_path: Path, small_chunks: None) -> None:
    assert copy_file(source, tmp_path / "copy") == source.stat().st_size
    assert (tmp_path / "copy").read_bytes() == source.read_bytes()


def test_a_kernel_that_copies_nothing_gets_the_stream_copy(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "copy_file_range", lambda *_args: 0)  # as some file systems answer
    copy_file(source, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == source.read_bytes()


def test_copies_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert copy_file(tmp_path / "empty", tmp_path / "copy") == 0
    assert (tmp_path / "copy").read_bytes() == b""


@pytest.mark.parametrize("code", [errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP])
def test_falls_back_to_a_stream_copy_when_the_kernel_refuses(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def refuse(*_args: object) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "copy_file_range", refuse)
    copy_file(source, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == source.read_bytes()


def test_a_failure_after_the_first_chunk_is_raised_not_papered_over(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_chunks: None
) -> None:
    real = os.copy_file_range
    calls = []

    def fail_second(*args: object) -> int:
        calls.append(args)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args)

    monkeypatch.setattr(os, "copy_file_range", fail_second)
    with pytest.raises(OSError, match="No space left"):
        copy_file(source, tmp_path / "copy")


def test_a_source_that_shrinks_while_copied_is_an_error(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_chunks: None
) -> None:
    real = os.copy_file_range

    def shrink_after_first_chunk(*args: object) -> int:
        copied = real(*args)
        os.truncate(source, 1 << 20)
        return copied

    monkeypatch.setattr(os, "copy_file_range", shrink_after_first_chunk)
    with pytest.raises(OSError, match=r"changed size while it was copied \(1048576 of 3145745 bytes\)"):
        copy_file(source, tmp_path / "copy")


def test_a_cancelled_copy_stops(source: Path, tmp_path: Path, small_chunks: None) -> None:
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(CopyCancelledError):
        copy_file(source, tmp_path / "copy", cancelled)


def test_background_copy_appears_only_when_finished(source: Path, tmp_path: Path) -> None:
    partial = tmp_path / ".copy.partial"
    copy = BackgroundCopy(source, partial)
    assert copy.finish(tmp_path / "copy") == tmp_path / "copy"
    assert (tmp_path / "copy").read_bytes() == source.read_bytes()
    assert not partial.exists()


def test_background_copy_cancel_leaves_nothing(source: Path, tmp_path: Path) -> None:
    partial = tmp_path / ".copy.partial"
    BackgroundCopy(source, partial).cancel()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.params"]


def test_background_copy_hands_its_error_to_finish(tmp_path: Path) -> None:
    partial = tmp_path / ".copy.partial"
    copy = BackgroundCopy(tmp_path / "missing.params", partial)
    with pytest.raises(FileNotFoundError, match="missing.params"):
        copy.finish(tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
    assert not partial.exists()


def test_link_or_copy_links_when_it_can_and_copies_otherwise(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link_or_copy(source, tmp_path / "linked")
    assert (tmp_path / "linked").samefile(source)

    def no_links(*_args: object) -> None:
        raise OSError(errno.EPERM, "links not allowed here")

    monkeypatch.setattr(os, "link", no_links)
    link_or_copy(source, tmp_path / "copied")
    assert not (tmp_path / "copied").samefile(source)
    assert (tmp_path / "copied").read_bytes() == source.read_bytes()
