"""Safe extraction and reproducible creation of ``model.tar.gz`` archives.

Extraction is stricter than :mod:`tarfile`'s ``data`` filter on purpose: a SageMaker model
archive holds a few regular files, so links, devices and FIFOs are refused outright rather than
sanitised, and member count, member size and total size are bounded (against tar and gzip bombs)
by the sizes the members' headers declare, before their data is read. :func:`list_members` checks
an archive without writing anything; :func:`safe_extract` can then extract only the members a
caller uses, each streamed with a cap on the bytes written. Memory does not grow with the archive.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO, NamedTuple

from model_fix.errors import CorruptArchiveError, OverwriteRefusedError, UnsafeArchiveError
from model_fix.limits import MAX_ARCHIVE_BYTES, MAX_ARCHIVE_MEMBERS, MAX_PARAMS_BYTES, size_in_words

_CHUNK = 1 << 20


class ExtractLimits(NamedTuple):
    """Bounds on what :func:`safe_extract` and :func:`list_members` accept (see model_fix.limits)."""

    max_members: int = MAX_ARCHIVE_MEMBERS
    max_member_bytes: int = MAX_PARAMS_BYTES
    max_total_bytes: int = MAX_ARCHIVE_BYTES


def _member_path(archive: Path, name: str) -> PurePosixPath:
    """The member's relative path, or :class:`UnsafeArchiveError` if it could escape the target."""
    if not name or "\x00" in name or "\\" in name:
        raise UnsafeArchiveError(f"{archive}: member {name!r}: invalid name")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise UnsafeArchiveError(f"{archive}: member {name!r}: absolute path")
    parts = [part for part in path.parts if part != "."]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r}: '..' in path")
    if parts and ":" in parts[0]:
        raise UnsafeArchiveError(f"{archive}: member {name!r}: drive or scheme in path")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _create(archive: Path, member: tarfile.TarInfo, mkdir: Callable[..., None]) -> None:
    """Make a folder for ``member``; a name an earlier member (or ``target``) holds as a file is refused."""
    try:
        mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise UnsafeArchiveError(
            f"{archive}: member {member.name!r}: {exc.filename} already exists as a file"
        ) from exc


@contextmanager
def _open(archive: Path) -> Iterator[tarfile.TarFile]:
    """The archive open for reading; unreadable or missing archives become CorruptArchiveError."""
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            yield tar
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise CorruptArchiveError(f"{archive}: not a readable tar.gz: {exc}") from exc
    except FileNotFoundError as exc:
        if not archive.exists():
            raise CorruptArchiveError(f"{archive}: archive not found") from exc
        raise


def _checked(
    archive: Path, tar: tarfile.TarFile, limits: ExtractLimits
) -> Iterator[tuple[tarfile.TarInfo, PurePosixPath]]:
    """Each member with its relative path, refused (UnsafeArchiveError) if unsafe or over ``limits``.

    Every check uses the member's header only, so it happens before the member's data is read
    (or, for a member that is skipped, decompressed).
    """
    seen: set[PurePosixPath] = set()
    total = 0
    for count, member in enumerate(tar, start=1):
        if count > limits.max_members:
            raise UnsafeArchiveError(f"{archive}: more than {limits.max_members} members")
        relative = _member_path(archive, member.name)
        if member.issym() or member.islnk():
            kind = "symbolic link" if member.issym() else "hard link"
            raise UnsafeArchiveError(f"{archive}: member {member.name!r}: {kind} to {member.linkname!r}")
        if not member.isdir() and not member.isreg():
            raise UnsafeArchiveError(f"{archive}: member {member.name!r}: not a regular file (device/FIFO)")
        if member.isreg():
            if relative in seen:
                raise UnsafeArchiveError(f"{archive}: member {member.name!r}: appears twice")
            seen.add(relative)
            if member.size > limits.max_member_bytes:
                raise UnsafeArchiveError(
                    f"{archive}: member {member.name!r}: {member.size} bytes, over the "
                    f"{limits.max_member_bytes}-byte limit ({size_in_words(limits.max_member_bytes)}) "
                    "for one member"
                )
            total += member.size
            if total > limits.max_total_bytes:
                raise UnsafeArchiveError(
                    f"{archive}: member {member.name!r}: total size over the "
                    f"{limits.max_total_bytes}-byte limit ({size_in_words(limits.max_total_bytes)}) "
                    "for all members"
                )
        yield member, relative


def list_members(archive: str | Path, limits: ExtractLimits = ExtractLimits()) -> dict[str, int]:
    """Check every member of ``archive`` as :func:`safe_extract` does, writing nothing.

    Returns each regular file's relative path and its size, in archive order. Raises
    :class:`UnsafeArchiveError` or :class:`CorruptArchiveError` as :func:`safe_extract` does.
    """
    archive = Path(archive)
    with _open(archive) as tar:
        return {
            str(relative): member.size
            for member, relative in _checked(archive, tar, limits)
            if member.isreg()
        }


def safe_extract(
    archive: str | Path,
    target: str | Path,
    limits: ExtractLimits = ExtractLimits(),
    members: Collection[str] | None = None,
) -> list[str]:
    """Extract regular files and directories of ``archive`` into ``target``; return the file names.

    Refuses (with :class:`UnsafeArchiveError` naming the archive and member) absolute paths,
    ``..``, symbolic and hard links, devices and FIFOs, duplicate names, and members or totals
    over ``limits``, by their headers, before their data is read. Existing files in ``target``
    are never overwritten. With ``members`` (relative paths as :func:`list_members` gives them),
    only those files (and their folders) are written; every other member is still checked. Each
    file is streamed to disk, and no more bytes are written than its header declares.
    """
    archive = Path(archive)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    wanted = None if members is None else {str(_member_path(archive, name)) for name in members}
    extracted: list[str] = []
    with _open(archive) as tar:
        for member, relative in _checked(archive, tar, limits):
            if wanted is not None and str(relative) not in wanted:
                continue
            destination = target / relative
            if member.isdir():
                _create(archive, member, destination.mkdir)
                continue
            _create(archive, member, destination.parent.mkdir)
            try:
                out = destination.open("xb")
            except FileExistsError as exc:
                raise UnsafeArchiveError(
                    f"{archive}: member {member.name!r}: {destination} already exists"
                ) from exc
            try:
                with out:
                    source = tar.extractfile(member)
                    assert source is not None  # a regular file always has data
                    with source:
                        _stream(archive, member, source, out, min(member.size, limits.max_member_bytes))
            except BaseException:
                destination.unlink(missing_ok=True)  # no partial member is left behind
                raise
            extracted.append(str(relative))
    return extracted


def _stream(archive: Path, member: tarfile.TarInfo, source: BinaryIO, out: BinaryIO, cap: int) -> None:
    """Copy ``source`` to ``out`` in chunks, refusing to write more than ``cap`` bytes."""
    written = 0
    for chunk in iter(lambda: source.read(_CHUNK), b""):
        written += len(chunk)
        if written > cap:
            raise UnsafeArchiveError(
                f"{archive}: member {member.name!r}: more data than the {cap} bytes its header declares"
            )
        out.write(chunk)


def write_reproducible_tar(destination: str | Path, files: Mapping[str, str | Path]) -> Path:
    """Write a gzip tar of ``files`` (archive name -> path) that depends only on their content.

    Members are sorted by name, regular files with mode 0644, mtime 0, uid/gid 0 and no owner
    names; the gzip header has mtime 0 and no file name. Same input, same bytes. The archive is
    written beside ``destination`` and renamed into place, so a failure leaves no partial file;
    a destination that is one of the inputs is refused.
    """
    destination = Path(destination)
    for name, path in files.items():
        _member_path(destination, name)
        if destination.exists() and Path(path).exists() and destination.samefile(path):
            raise OverwriteRefusedError(f"{destination}: would overwrite the input {path}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial")
    try:
        with (
            partial.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
        ):
            for name in sorted(files):
                path = Path(files[name])
                info = tarfile.TarInfo(name)
                info.size = path.stat().st_size
                info.mtime = 0
                info.mode = 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.type = tarfile.REGTYPE
                with path.open("rb") as data:
                    tar.addfile(info, data)
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)
    return destination


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
