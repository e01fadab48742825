"""Tests for model_fix.repack: rename, fix and reproducibly repack a SageMaker model.tar.gz."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from model_fix import (
    FixOptions,
    InputNotFoundError,
    NumClassesMismatchError,
    OptionError,
    OverwriteRefusedError,
    UnsafeArchiveError,
    repack_model,
    repack_model_archive,
)


def _sagemaker_tar(folder: Path, destination: Path) -> Path:
    """An archive laid out like SageMaker's (three top-level files, real mtimes and owners)."""
    with tarfile.open(destination, "w:gz") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    return destination


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_repacks_with_renamed_and_deploy_artefacts(model_dir: Path, tmp_path: Path) -> None:
    source = _sagemaker_tar(model_dir, tmp_path / "model.tar.gz")
    original = source.read_bytes()
    result = repack_model_archive(source, tmp_path / "out" / "model.tar.gz", "jhg_choc_model_algo_1")
    expected = [
        "deploy_jhg_choc_model_algo_1-0000.params",
        "deploy_jhg_choc_model_algo_1-symbol.json",
        "hyperparams.json",
        "jhg_choc_model_algo_1-0000.params",
        "jhg_choc_model_algo_1-symbol.json",
    ]
    assert result.members == expected
    assert (result.deploy_model_name, result.num_classes, result.prefix) == (
        "deploy_jhg_choc_model_algo_1",
        1,
        "jhg_choc_model_algo_1",
    )
    assert (result.source_prefix, result.passthrough, result.removed_nodes) == ("model_algo_1", False, 10)
    assert result.sha256 == hashlib.sha256(result.archive_path.read_bytes()).hexdigest()
    members = _members(result.archive_path)
    assert list(members) == expected
    params = (model_dir / "model_algo_1-0000.params").read_bytes()
    assert members["jhg_choc_model_algo_1-0000.params"] == params
    assert members["deploy_jhg_choc_model_algo_1-0000.params"] == params
    assert (
        members["jhg_choc_model_algo_1-symbol.json"] == (model_dir / "model_algo_1-symbol.json").read_bytes()
    )
    deploy = json.loads(members["deploy_jhg_choc_model_algo_1-symbol.json"])
    assert deploy["nodes"][-1]["name"] == "detection"
    assert members["hyperparams.json"] == (model_dir / "hyperparams.json").read_bytes()
    assert source.read_bytes() == original
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.tar.gz"]  # no temporary left


def test_same_input_gives_identical_bytes_and_repacking_is_idempotent(
    model_dir: Path, tmp_path: Path
) -> None:
    source = _sagemaker_tar(model_dir, tmp_path / "model.tar.gz")
    first = repack_model_archive(source, tmp_path / "a.tar.gz", "choc")
    second = repack_model_archive(source, tmp_path / "b.tar.gz", "choc")
    assert first.archive_path.read_bytes() == second.archive_path.read_bytes()
    assert first.sha256 == second.sha256
    again = repack_model_archive(first.archive_path, tmp_path / "c.tar.gz", "choc")
    assert again.archive_path.read_bytes() == first.archive_path.read_bytes()


def test_keeps_the_name_without_a_prefix_and_repacks_a_folder(model_dir: Path, tmp_path: Path) -> None:
    result = repack_model(model_dir, tmp_path / "model.tar.gz")
    assert result.deploy_model_name == "deploy_model_algo_1"
    assert "model_algo_1-symbol.json" in result.members
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "hyperparams.json",
        "model_algo_1-0000.params",
        "model_algo_1-symbol.json",
    ]


def test_an_archive_without_hyperparams_has_four_members(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "hyperparams.json").unlink()
    source = _sagemaker_tar(model_dir, tmp_path / "model.tar.gz")
    result = repack_model_archive(source, tmp_path / "out.tar.gz", "m", FixOptions(force_suppress=False))
    assert result.members == [
        "deploy_m-0000.params",
        "deploy_m-symbol.json",
        "m-0000.params",
        "m-symbol.json",
    ]
    deploy = json.loads(_members(result.archive_path)["deploy_m-symbol.json"])
    assert deploy["nodes"][-1]["attrs"]["force_suppress"] == "False"


def test_refuses_to_replace_its_source(model_dir: Path, tmp_path: Path) -> None:
    source = _sagemaker_tar(model_dir, tmp_path / "model.tar.gz")
    original = source.read_bytes()
    with pytest.raises(OverwriteRefusedError, match="must not replace its source"):
        repack_model_archive(source, source, "choc")
    with pytest.raises(OverwriteRefusedError):
        repack_model_archive(source, tmp_path / "." / "model.tar.gz", "choc")
    assert source.read_bytes() == original


@pytest.mark.parametrize("prefix", ["../choc", "a/b", "", ".hidden", "deploy model", "choc\n", "choc\r\n"])
def test_refuses_unsafe_prefixes(model_dir: Path, tmp_path: Path, prefix: str) -> None:
    source = _sagemaker_tar(model_dir, tmp_path / "model.tar.gz")
    with pytest.raises(OptionError, match="prefix"):
        repack_model_archive(source, tmp_path / "out.tar.gz", prefix)


def test_hostile_archives_and_bad_models_leave_nothing_behind(model_dir: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("/tmp/model_algo_1-symbol.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="absolute path"):
        repack_model_archive(evil, out / "model.tar.gz", "choc")
    source = _sagemaker_tar(model_dir, tmp_path / "model.tar.gz")
    with pytest.raises(NumClassesMismatchError):
        repack_model_archive(source, out / "model.tar.gz", "choc", FixOptions(num_classes=5))
    assert list(out.iterdir()) == []


def test_the_source_must_be_an_archive(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="not found or not a tar archive"):
        repack_model_archive(tmp_path / "absent.tar.gz", tmp_path / "out.tar.gz", "choc")
    with pytest.raises(InputNotFoundError, match="not found or not a tar archive"):
        repack_model_archive(model_dir, tmp_path / "out.tar.gz", "choc")
