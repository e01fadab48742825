"""Tests for model_fix.archive: safe extraction of hostile archives and reproducible tar.gz files."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from model_fix.archive import ExtractLimits, list_members, safe_extract, sha256_file, write_reproducible_tar
from model_fix.errors import CorruptArchiveError, OverwriteRefusedError, UnsafeArchiveError
from model_fix.limits import MAX_ARCHIVE_BYTES, MAX_ARCHIVE_MEMBERS, MAX_PARAMS_BYTES

from .conftest import file_size_limit, write_gzip_bomb


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def test_extracts_regular_files_and_directories(tmp_path: Path) -> None:
    directory = tarfile.TarInfo("sub")
    directory.type = tarfile.DIRTYPE
    archive = _tar(
        tmp_path / "model.tar.gz",
        [_file("./model_algo_1-symbol.json", b"{}"), (directory, None), _file("sub/hyperparams.json", b"[]")],
    )
    names = safe_extract(archive, tmp_path / "out")
    assert names == ["model_algo_1-symbol.json", "sub/hyperparams.json"]
    assert (tmp_path / "out" / "model_algo_1-symbol.json").read_bytes() == b"{}"
    assert (tmp_path / "out" / "sub" / "hyperparams.json").read_bytes() == b"[]"


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_file("/etc/cron.d/evil"), r"member '/etc/cron.d/evil': absolute path"),
        (_file("../evil"), r"member '../evil': '..' in path"),
        (_file("a/../../evil"), r"'..' in path"),
        (_file("C:/evil"), "drive or scheme"),
        (_file("a\\..\\evil"), "invalid name"),
        (_special("link", tarfile.SYMTYPE, "/etc/passwd"), r"member 'link': symbolic link to '/etc/passwd'"),
        (_special("hard", tarfile.LNKTYPE, "model_algo_1-symbol.json"), "hard link"),
        (_special("dev", tarfile.CHRTYPE), "not a regular file"),
        (_special("blk", tarfile.BLKTYPE), "not a regular file"),
        (_special("fifo", tarfile.FIFOTYPE), "not a regular file"),
    ],
)
def test_refuses_hostile_members_naming_them(tmp_path: Path, member, message: str) -> None:
    archive = _tar(tmp_path / "model.tar.gz", [_file("model_algo_1-symbol.json"), member])
    with pytest.raises(UnsafeArchiveError, match=message) as info:
        safe_extract(archive, tmp_path / "out")
    assert str(archive) in str(info.value)
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_file("../evil"), r"member '../evil': '..' in path"),
        (_special("link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (_special("fifo", tarfile.FIFOTYPE), "not a regular file"),
    ],
)
def test_listing_checks_every_member_and_writes_nothing(tmp_path: Path, member, message: str) -> None:
    good = _tar(tmp_path / "good.tar.gz", [_file("./a.json", b"{}"), _special("d", tarfile.DIRTYPE)])
    assert list_members(good) == {"a.json": 2}
    archive = _tar(tmp_path / "m.tar.gz", [_file("a.json"), member])
    with pytest.raises(UnsafeArchiveError, match=message):
        list_members(archive)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.tar.gz", "m.tar.gz"]


def test_extracts_only_the_members_asked_for(tmp_path: Path) -> None:
    directory = tarfile.TarInfo("sub")
    directory.type = tarfile.DIRTYPE
    members = [_file("a", b"1"), (directory, None), _file("sub/b", b"2"), _file("c", b"3" * 1000)]
    archive = _tar(tmp_path / "m.tar.gz", members)
    assert safe_extract(archive, tmp_path / "out", members=["./a", "sub/b"]) == ["a", "sub/b"]
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*"))
    assert written == ["a", "sub", "sub/b"]
    # A member not extracted is still checked: a link after the wanted ones is refused.
    hostile = _tar(tmp_path / "h.tar.gz", [_file("a"), _special("l", tarfile.SYMTYPE, "/etc/passwd")])
    with pytest.raises(UnsafeArchiveError, match="member 'l': symbolic link"):
        safe_extract(hostile, tmp_path / "out2", members=["a"])


def test_default_limits_are_the_documented_constants() -> None:
    assert ExtractLimits() == (MAX_ARCHIVE_MEMBERS, MAX_PARAMS_BYTES, MAX_ARCHIVE_BYTES)
    assert (MAX_PARAMS_BYTES, MAX_ARCHIVE_BYTES) == (1 << 30, (2 << 30) + (64 << 20))


def test_a_gzip_bomb_is_refused_by_its_headers_before_its_data_is_read(tmp_path: Path) -> None:
    """The issue's bomb: a 7.6 MB archive of two 3.9 GB members (each under the old 4 GiB limit)."""
    bomb = write_gzip_bomb(
        tmp_path / "bomb.tar.gz", [("junk1.bin", 3_900_000_000), ("junk2.bin", 3_900_000_000)]
    )
    assert bomb.stat().st_size < 8 << 20
    started = time.perf_counter()
    message = (
        r"bomb.tar.gz: member 'junk1.bin': 3900000000 bytes, over the 1073741824-byte limit \(1 GiB\) "
        "for one member"
    )
    # The old code started writing 3.9 GB: the file size limit makes it fail at 64 MiB instead.
    with file_size_limit(64 << 20), pytest.raises(UnsafeArchiveError, match=message):
        safe_extract(bomb, tmp_path / "out")
    assert time.perf_counter() - started < 2
    assert list((tmp_path / "out").iterdir()) == []


def test_the_total_counts_members_that_are_not_extracted(tmp_path: Path) -> None:
    bomb = write_gzip_bomb(tmp_path / "bomb.tar.gz", [("a", 40 << 20), ("b", 40 << 20), ("c", b"x")])
    limits = ExtractLimits(max_member_bytes=50 << 20, max_total_bytes=64 << 20)
    with file_size_limit(1 << 20), pytest.raises(UnsafeArchiveError, match="member 'b': total size over"):
        safe_extract(bomb, tmp_path / "out", limits, members=["c"])
    assert list((tmp_path / "out").iterdir()) == []


def test_no_more_is_written_than_the_header_declares(tmp_path: Path, monkeypatch) -> None:
    archive = _tar(tmp_path / "m.tar.gz", [_file("a", b"x" * 100)])
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, member: io.BytesIO(b"y" * (3 << 20)))
    with pytest.raises(
        UnsafeArchiveError, match="member 'a': more data than the 100 bytes its header declares"
    ):
        safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # the partial file is removed


def test_refuses_duplicates(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "m.tar.gz", [_file("a.json"), _file("./a.json")])
    with pytest.raises(UnsafeArchiveError, match="appears twice"):
        safe_extract(archive, tmp_path / "out")


def test_enforces_size_and_count_limits(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "m.tar.gz", [_file("a", b"a" * 100), _file("b", b"b" * 100), _file("c", b"c")])
    with pytest.raises(UnsafeArchiveError, match=r"member 'a': 100 bytes, over the 50-byte limit"):
        safe_extract(archive, tmp_path / "o1", ExtractLimits(max_member_bytes=50))
    with pytest.raises(UnsafeArchiveError, match=r"member 'b': total size over the 150-byte limit"):
        safe_extract(archive, tmp_path / "o2", ExtractLimits(max_total_bytes=150))
    with pytest.raises(UnsafeArchiveError, match="more than 2 members"):
        safe_extract(archive, tmp_path / "o3", ExtractLimits(max_members=2))


def test_never_overwrites_existing_files(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "m.tar.gz", [_file("keep.txt", b"new")])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_bytes(b"old")
    with pytest.raises(UnsafeArchiveError, match="already exists"):
        safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_bytes() == b"old"


@pytest.mark.parametrize(
    "members",
    [
        [_file("a"), _file("a/b")],  # a folder wanted where a file was written
        [_file("a"), _special("a", tarfile.DIRTYPE)],
    ],
)
def test_file_and_folder_of_one_name_are_refused_naming_the_member(tmp_path: Path, members) -> None:
    archive = _tar(tmp_path / "m.tar.gz", members)
    with pytest.raises(UnsafeArchiveError, match=r"m\.tar\.gz: member 'a.*already exists"):
        safe_extract(archive, tmp_path / "out")


def test_corrupt_archives_are_reported(tmp_path: Path) -> None:
    good = _tar(tmp_path / "good.tar.gz", [_file("a", os.urandom(5000))]).read_bytes()
    for name, data in [("text.tar.gz", b"not an archive"), ("cut.tar.gz", good[: len(good) // 2])]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CorruptArchiveError, match=f"{name}: not a readable tar.gz"):
            safe_extract(path, tmp_path / f"out-{name}")
    with pytest.raises(CorruptArchiveError, match="archive not found"):
        safe_extract(tmp_path / "absent.tar.gz", tmp_path / "out")


def _inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    files = {}
    for name, data in [
        ("b-symbol.json", b"{}"),
        ("a-0000.params", os.urandom(3000)),
        ("hyperparams.json", b"{}"),
    ]:
        (folder / name).write_bytes(data)
        files[name] = folder / name
    return files


def test_reproducible_tar_has_fixed_metadata_and_sorted_members(tmp_path: Path) -> None:
    files = _inputs(tmp_path / "in")
    archive = write_reproducible_tar(tmp_path / "out" / "model.tar.gz", files)
    data = archive.read_bytes()
    assert data[:4] == b"\x1f\x8b\x08\x00"  # gzip, no FNAME flag
    assert data[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == sorted(files)
        for member in members:
            assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (0, 0, 0, "", "")
            assert (member.mode, member.type) == (0o644, tarfile.REGTYPE)
            assert tar.extractfile(member).read() == files[member.name].read_bytes()
    assert not list((tmp_path / "out").glob(".*partial"))


def test_same_content_gives_identical_bytes(tmp_path: Path) -> None:
    files = _inputs(tmp_path / "in")
    first = write_reproducible_tar(tmp_path / "one.tar.gz", files).read_bytes()
    later = time.time() + 3600
    for path in files.values():
        os.utime(path, (later, later))
        path.chmod(0o600)
    reordered = dict(reversed(list(files.items())))
    second = write_reproducible_tar(tmp_path / "two.tar.gz", reordered).read_bytes()
    assert first == second
    assert sha256_file(tmp_path / "one.tar.gz") == sha256_file(tmp_path / "two.tar.gz")
    assert gzip.decompress(first)  # a valid gzip stream


def test_refuses_to_overwrite_an_input_and_leaves_no_partial_file(tmp_path: Path) -> None:
    files = _inputs(tmp_path / "in")
    with pytest.raises(OverwriteRefusedError, match="would overwrite the input"):
        write_reproducible_tar(files["a-0000.params"], files)
    with pytest.raises(UnsafeArchiveError, match=r"'\.\.' in path"):
        write_reproducible_tar(tmp_path / "x.tar.gz", {"../escape": files["hyperparams.json"]})
    with pytest.raises(FileNotFoundError):
        write_reproducible_tar(tmp_path / "y.tar.gz", {**files, "z": tmp_path / "absent"})
    assert not (tmp_path / "y.tar.gz").exists()
    assert not list(tmp_path.glob(".*partial"))
