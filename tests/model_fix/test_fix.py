"""Tests for model_fix.fix: the deploy model from a folder, prefix or archive, and every error path."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import tarfile
import time
import tracemalloc
from pathlib import Path

import pytest

from model_fix import (
    CorruptArchiveError,
    CorruptParamsError,
    CorruptSymbolError,
    FixOptions,
    HyperparamsError,
    InputNotFoundError,
    NotSSDGraphError,
    NumClassesMismatchError,
    OptionError,
    OverwriteRefusedError,
    ParamsMismatchError,
    UnsafeArchiveError,
    fix_model,
    to_deploy_graph,
)
from model_fix.fix import check_name, choose_model_files, open_model_source
from model_fix.limits import MAX_HYPERPARAMS_BYTES, MAX_PARAMS_BYTES, MAX_SYMBOL_BYTES
from model_fix.symbol_json import dumps_symbol

from .conftest import TRAINING_SYMBOL, file_size_limit, tar_members, write_gzip_bomb


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


def _tar_of(folder: Path, destination: Path) -> Path:
    with tarfile.open(destination, "w:gz") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    return destination


def test_writes_the_deploy_model_beside_a_folder(model_dir: Path, training_graph) -> None:
    before = _digests(model_dir)
    result = fix_model(model_dir, model_dir)
    assert result.symbol_path == model_dir / "deploy_model_algo_1-symbol.json"
    assert result.params_path == model_dir / "deploy_model_algo_1-0000.params"
    assert result.hyperparams_path == model_dir / "hyperparams.json"
    assert (result.prefix, result.deploy_prefix, result.num_classes) == (
        "model_algo_1",
        "deploy_model_algo_1",
        1,
    )
    assert (result.passthrough, result.removed_nodes, result.base_network) == (False, 10, "resnet-50")
    assert (result.nms_threshold, result.nms_topk, result.force_suppress) == (0.45, 400, True)
    assert result.params_path.read_bytes() == (model_dir / "model_algo_1-0000.params").read_bytes()
    expected = dumps_symbol(to_deploy_graph(training_graph).graph) + "\n"
    assert result.symbol_path.read_text() == expected
    after = _digests(model_dir)
    assert {name: after[name] for name in before} == before  # inputs untouched
    assert not list(model_dir.glob(".*partial"))


def test_accepts_a_prefix_a_symbol_path_and_an_archive(model_dir: Path, tmp_path: Path) -> None:
    reference = fix_model(model_dir, tmp_path / "ref")
    expected = reference.symbol_path.read_bytes()
    archive = _tar_of(model_dir, tmp_path / "model.tar.gz")
    for source in (model_dir / "model_algo_1", model_dir / "model_algo_1-symbol.json", archive, str(archive)):
        out = tmp_path / f"out-{abs(hash(str(source)))}"
        result = fix_model(source, out)
        assert result.symbol_path.read_bytes() == expected
        assert result.params_path.read_bytes() == reference.params_path.read_bytes()
        assert (out / "hyperparams.json").read_bytes() == (model_dir / "hyperparams.json").read_bytes()
        assert sorted(p.name for p in out.iterdir()) == [
            "deploy_model_algo_1-0000.params",
            "deploy_model_algo_1-symbol.json",
            "hyperparams.json",
        ]


def test_is_idempotent(model_dir: Path, tmp_path: Path) -> None:
    first = fix_model(model_dir, tmp_path / "one")
    again = fix_model(first.symbol_path.parent / first.deploy_prefix, tmp_path / "two")
    assert again.passthrough and again.removed_nodes == 0
    assert again.deploy_prefix == "deploy_model_algo_1"  # not deploy_deploy_...
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")
    # In place on its own output: nothing to write, nothing overwritten.
    before = _digests(tmp_path / "one")
    in_place = fix_model(tmp_path / "one", tmp_path / "one")
    assert in_place.passthrough and _digests(tmp_path / "one") == before
    # Running the fix twice into the same folder gives the same bytes.
    fix_model(model_dir, tmp_path / "one")
    assert _digests(tmp_path / "one") == before


def test_a_deploy_model_keeps_its_settings_and_warns_about_different_ones(
    model_dir: Path, tmp_path: Path
) -> None:
    first = fix_model(model_dir, tmp_path / "one", FixOptions(force_suppress=False))
    again = fix_model(first.symbol_path.parent / first.deploy_prefix, tmp_path / "two")
    assert again.symbol_path.read_bytes() == first.symbol_path.read_bytes()
    assert any("already a deploy graph; kept its {'force_suppress': 'False'}" in w for w in again.warnings)


def test_options_are_written_into_the_detection(model_dir: Path, tmp_path: Path) -> None:
    options = FixOptions(nms_threshold=0.3, nms_topk=100, force_suppress=False, num_classes=1, data_shape=512)
    result = fix_model(model_dir, tmp_path, options)
    detection = json.loads(result.symbol_path.read_text())["nodes"][-1]
    assert detection["attrs"] == {
        "force_suppress": "False",
        "nms_threshold": "0.3",
        "nms_topk": "100",
        "variances": "(0.1, 0.1, 0.2, 0.2)",
    }
    assert result.warnings == []


def test_defaults_come_from_hyperparams_json_and_explicit_options_win(
    model_dir: Path, tmp_path: Path
) -> None:
    hyperparams = json.loads((model_dir / "hyperparams.json").read_text())
    hyperparams.update(nms_threshold="0.5", nms_topk="200")
    (model_dir / "hyperparams.json").write_text(json.dumps(hyperparams))
    result = fix_model(model_dir, tmp_path / "a")
    assert (result.nms_threshold, result.nms_topk) == (0.5, 200)
    result = fix_model(model_dir, tmp_path / "b", FixOptions(nms_threshold=0.4))
    assert (result.nms_threshold, result.nms_topk) == (0.4, 200)
    (model_dir / "hyperparams.json").unlink()
    result = fix_model(model_dir, tmp_path / "c")
    assert (result.nms_threshold, result.nms_topk, result.hyperparams_path) == (0.45, 400, None)
    assert not (tmp_path / "c" / "hyperparams.json").exists()


def test_network_and_data_shape_mismatches_are_warnings(model_dir: Path, tmp_path: Path) -> None:
    result = fix_model(model_dir, tmp_path, FixOptions(network="vgg16_reduced", data_shape=480))
    assert result.warnings == [
        "network 'vgg16_reduced' was given, but model_algo_1-symbol.json has a resnet-50 base",
        "data_shape 480 differs from the trained image_shape 512",
    ]


def test_a_base_network_in_hyperparams_that_differs_from_the_graph_is_a_warning(
    model_dir: Path, tmp_path: Path
) -> None:
    hyperparams = json.loads((model_dir / "hyperparams.json").read_text())
    (model_dir / "hyperparams.json").write_text(json.dumps({**hyperparams, "base_network": "vgg-16"}))
    result = fix_model(model_dir, tmp_path)
    assert result.warnings == [
        "network 'vgg-16' in hyperparams.json, but model_algo_1-symbol.json has a resnet-50 base"
    ]


def test_num_classes_option_must_match_the_graph(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(
        NumClassesMismatchError, match=r"num_classes 2 was given, but .*model_algo_1-symbol.json predicts 1"
    ):
        fix_model(model_dir, tmp_path, FixOptions(num_classes=2))
    assert not tmp_path.joinpath("deploy_model_algo_1-symbol.json").exists()


def test_hyperparams_num_classes_must_match_the_graph(model_dir: Path, tmp_path: Path) -> None:
    shutil.copyfile(TRAINING_SYMBOL.with_name("hyperparams.example.json"), model_dir / "hyperparams.json")
    with pytest.raises(
        NumClassesMismatchError, match=r"hyperparams.json says num_classes=4, but .* predicts 1"
    ):
        fix_model(model_dir, tmp_path)
    # An explicit, matching option overrides the inconsistent file.
    assert fix_model(model_dir, tmp_path, FixOptions(num_classes=1)).num_classes == 1


def test_corrupt_symbol_names_file_line_and_column(model_dir: Path, tmp_path: Path) -> None:
    symbol = model_dir / "model_algo_1-symbol.json"
    symbol.write_text(symbol.read_text().replace('"op": "Convolution"', '"op" "Convolution"', 1))
    with pytest.raises(
        CorruptSymbolError, match=r"model_algo_1-symbol.json: invalid JSON at line \d+, column 12"
    ):
        fix_model(model_dir, tmp_path)


def test_errors_inside_an_archive_name_the_archive_member(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "model_algo_1-symbol.json").write_text("{")
    archive = _tar_of(model_dir, tmp_path / "model.tar.gz")
    with pytest.raises(
        CorruptSymbolError, match=rf"{archive}:model_algo_1-symbol.json: invalid JSON at line 1"
    ):
        fix_model(archive, tmp_path / "out")


def test_a_graph_that_is_not_ssd_is_refused(model_dir: Path, tmp_path: Path) -> None:
    graph = json.loads(TRAINING_SYMBOL.read_text())
    graph["heads"] = [[346, 0, 0]]  # the resnet body only: a plain classifier trunk
    graph["nodes"] = graph["nodes"][:347]
    graph["node_row_ptr"] = graph["node_row_ptr"][:348]
    graph["arg_nodes"] = [i for i in graph["arg_nodes"] if i < 347]
    (model_dir / "model_algo_1-symbol.json").write_text(json.dumps(graph))
    with pytest.raises(NotSSDGraphError, match=r"model_algo_1-symbol.json: not an SSD graph"):
        fix_model(model_dir, tmp_path)


def test_corrupt_hyperparams_are_reported(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "hyperparams.json").write_text('{"num_classes": "1",}')
    with pytest.raises(HyperparamsError, match=r"hyperparams.json: invalid JSON at line 1, column 21"):
        fix_model(model_dir, tmp_path)
    (model_dir / "hyperparams.json").write_text('{"nms_threshold": "7"}')
    with pytest.raises(HyperparamsError, match=r"hyperparams.json: nms_threshold=7.0 is not in \(0, 1\]"):
        fix_model(model_dir, tmp_path)


@pytest.mark.parametrize(
    ("drop", "extra", "message"),
    [
        (
            ["aux:bn_data_moving_var"],
            None,
            r"1 weights the graph needs are missing, e.g. \['aux:bn_data_moving_var'\]",
        ),
        (
            [],
            {"arg:stray_weight": (2,)},
            r"1 keys are not arguments of the graph, e.g. \['arg:stray_weight'\]",
        ),
        (["arg:bn_data_gamma"], {"aux:bn_data_gamma": (2,)}, "missing, e.g. \\['arg:bn_data_gamma'\\]"),
        ([], {"bare_name": (2,)}, r"1 keys without an 'arg:'/'aux:' prefix"),
        (
            ["arg:_plus12_cls_pred_conv_weight"],
            {"arg:_plus12_cls_pred_conv_weight": (12, 1, 1, 1)},
            r"arg:_plus12_cls_pred_conv_weight has shape \(12, 1, 1, 1\) "
            r"but '_plus12_cls_pred_conv' has num_filter=8",
        ),
    ],
)
def test_params_must_match_the_graph(
    model_dir: Path, tmp_path: Path, training_graph, write_params, drop, extra, message
) -> None:
    params = write_params(training_graph, model_dir / "model_algo_1-0000.params", drop=drop, extra=extra)
    with pytest.raises(ParamsMismatchError, match=message) as info:
        fix_model(model_dir, tmp_path)
    assert str(params) in str(info.value)


def test_missing_or_ambiguous_inputs_are_reported(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(
        InputNotFoundError,
        match=r"model_algo_1-0003.params: not found; found \['model_algo_1-0000.params'\], "
        r"choose one with --epoch",
    ):
        fix_model(model_dir, tmp_path, FixOptions(epoch=3))
    with pytest.raises(
        InputNotFoundError, match=r"other-symbol.json: not found \(models here: \['model_algo_1'\]\)"
    ):
        fix_model(model_dir, tmp_path, FixOptions(prefix="other"))
    shutil.copyfile(model_dir / "model_algo_1-symbol.json", model_dir / "second-symbol.json")
    with pytest.raises(
        InputNotFoundError, match=r"several models \['model_algo_1', 'second'\]; choose one with --prefix"
    ):
        fix_model(model_dir, tmp_path)
    assert fix_model(model_dir, tmp_path, FixOptions(prefix="model_algo_1")).prefix == "model_algo_1"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputNotFoundError, match=r"no \*-symbol.json file"):
        fix_model(tmp_path / "empty", tmp_path)
    with pytest.raises(InputNotFoundError, match="archive not found"):
        fix_model(tmp_path / "absent.tar.gz", tmp_path)
    with pytest.raises(InputNotFoundError, match=r"folder .* not found"):
        fix_model(tmp_path / "nowhere" / "model_algo_1", tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputNotFoundError, match=r"not a model.tar.gz, a folder or a model prefix"):
        fix_model(tmp_path / "notes.txt", tmp_path)


def test_bad_archives_are_reported(tmp_path: Path) -> None:
    (tmp_path / "model.tar.gz").write_bytes(b"garbage")
    with pytest.raises(CorruptArchiveError, match=r"model.tar.gz: not a readable tar.gz"):
        fix_model(tmp_path / "model.tar.gz", tmp_path / "out")
    info = tarfile.TarInfo("../model_algo_1-symbol.json")
    info.size = 2
    with tarfile.open(tmp_path / "evil.tar.gz", "w:gz") as tar:
        tar.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(UnsafeArchiveError, match=r"member '../model_algo_1-symbol.json': '..' in path"):
        fix_model(tmp_path / "evil.tar.gz", tmp_path / "out")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (FixOptions(epoch=-1), "epoch -1"),
        (FixOptions(nms_threshold=1.5), r"nms_threshold 1.5: must be in \(0, 1\]"),
        (FixOptions(nms_topk=0), "nms_topk 0"),
        (FixOptions(num_classes=0), "num_classes 0"),
        (FixOptions(data_shape=0), "data_shape 0"),
        (FixOptions(prefix="../model"), "prefix '../model'"),
    ],
)
def test_invalid_options_name_the_parameter(model_dir: Path, tmp_path: Path, options, message) -> None:
    with pytest.raises(OptionError, match=message):
        fix_model(model_dir, tmp_path, options)


def test_a_prefix_source_and_a_different_prefix_option_conflict(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="differs from the source's model name 'model_algo_1'"):
        fix_model(model_dir / "model_algo_1", tmp_path, FixOptions(prefix="other"))


def test_never_overwrites_an_input(model_dir: Path, tmp_path: Path) -> None:
    # An output path that is a hard link to an input must not be written through.
    os.link(model_dir / "model_algo_1-0000.params", tmp_path / "deploy_model_algo_1-0000.params")
    before = _digests(model_dir)
    with pytest.raises(OverwriteRefusedError, match="would overwrite the input"):
        fix_model(model_dir, tmp_path)
    assert _digests(model_dir) == before
    (tmp_path / "deploy_model_algo_1-0000.params").unlink()
    os.link(model_dir / "model_algo_1-symbol.json", tmp_path / "deploy_model_algo_1-symbol.json")
    with pytest.raises(
        OverwriteRefusedError, match=r"deploy_model_algo_1-symbol.json: would overwrite the input"
    ):
        fix_model(model_dir, tmp_path)
    assert _digests(model_dir) == before


def test_memory_does_not_grow_with_the_params_size(
    model_dir: Path, tmp_path: Path, training_graph, write_params
) -> None:
    """A 64 MiB weight is indexed with seeks and stream-copied: peak Python memory stays small."""
    write_params(
        training_graph,
        model_dir / "model_algo_1-0000.params",
        drop=["arg:stage4_unit3_conv3_weight"],
        extra={"arg:stage4_unit3_conv3_weight": (2048, 1, 1, 8192)},
    )
    size = (model_dir / "model_algo_1-0000.params").stat().st_size
    assert size > 64 << 20
    tracemalloc.start()
    try:
        result = fix_model(model_dir, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.params_path.stat().st_size == size
    assert peak < 16 << 20, f"peak {peak} bytes for a {size}-byte params file"


def test_a_failed_fix_leaves_no_partial_file_and_no_new_folder(
    model_dir: Path, tmp_path: Path, training_graph, write_params
) -> None:
    write_params(training_graph, model_dir / "model_algo_1-0000.params", extra={"arg:stray": (2,)})
    out = tmp_path / "new" / "deploy"
    with pytest.raises(ParamsMismatchError):
        fix_model(model_dir, out)
    assert not out.exists()
    with pytest.raises(ParamsMismatchError):
        fix_model(model_dir, model_dir)  # the folder existed: it stays, holding only its inputs
    assert not list(model_dir.glob(".*")) and not list(model_dir.glob("deploy_*"))


def test_link_params_shares_the_weights_file(model_dir: Path, tmp_path: Path) -> None:
    result = fix_model(model_dir, tmp_path, link_params=True)
    assert result.params_path.samefile(model_dir / "model_algo_1-0000.params")
    copied = fix_model(model_dir, tmp_path / "copy")
    assert not copied.params_path.samefile(model_dir / "model_algo_1-0000.params")


def test_only_the_members_the_fix_uses_are_extracted(model_dir: Path, tmp_path: Path) -> None:
    """A repacked archive (training and deploy model) plus members the fix does not use."""
    fix_model(model_dir, model_dir)  # adds deploy_model_algo_1-* beside the training model
    members = [*tar_members(model_dir), ("notes/readme.txt", b"hi"), ("junk.bin", 20 << 20)]
    archive = write_gzip_bomb(tmp_path / "model.tar.gz", members)
    with file_size_limit(16 << 20), open_model_source(archive, FixOptions(), work_dir=tmp_path) as files:
        extracted = sorted(p.name for p in files.directory.rglob("*"))
        assert extracted == ["hyperparams.json", "model_algo_1-0000.params", "model_algo_1-symbol.json"]
        assert files.symbol.read_bytes() == (model_dir / "model_algo_1-symbol.json").read_bytes()
    with open_model_source(archive, FixOptions(prefix="deploy_model_algo_1"), work_dir=tmp_path) as files:
        assert sorted(p.name for p in files.directory.iterdir()) == [
            "deploy_model_algo_1-0000.params",
            "deploy_model_algo_1-symbol.json",
            "hyperparams.json",
        ]
    assert fix_model(archive, tmp_path / "out").num_classes == 1


def test_the_issues_gzip_bomb_ends_in_a_clear_error_with_nothing_written(
    model_dir: Path, tmp_path: Path
) -> None:
    """7.6 MB expanding to 7.8 GB in two unused members: the old code wrote them all to disk."""
    members = [("junk1.bin", 3_900_000_000), ("junk2.bin", 3_900_000_000), *tar_members(model_dir)]
    bomb = write_gzip_bomb(tmp_path / "bomb.tar.gz", members)
    started = time.perf_counter()
    with file_size_limit(64 << 20), pytest.raises(UnsafeArchiveError) as info:
        fix_model(bomb, tmp_path / "out")
    assert str(info.value) == (
        f"{bomb}: member 'junk1.bin': 3900000000 bytes, over the 1073741824-byte limit (1 GiB) for one member"
    )
    assert time.perf_counter() - started < 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "size", "message"),
    [
        (
            "model_algo_1-symbol.json",
            MAX_SYMBOL_BYTES + 1,
            "4194305 bytes, more than the 4 MiB a symbol file may have",
        ),
        (
            "hyperparams.json",
            MAX_HYPERPARAMS_BYTES + 1,
            "1048577 bytes, more than the 1 MiB a hyperparams.json",
        ),
        (
            "model_algo_1-0000.params",
            MAX_PARAMS_BYTES + 1,
            r"1073741825 bytes, over the 1073741824-byte limit",
        ),
    ],
)
def test_a_used_member_over_its_limit_is_refused_before_anything_is_written(
    model_dir: Path, tmp_path: Path, name: str, size: int, message: str
) -> None:
    members = [(n, size if n == name else data) for n, data in tar_members(model_dir)]
    archive = write_gzip_bomb(tmp_path / "model.tar.gz", members)
    with (
        file_size_limit(1 << 20),
        pytest.raises(UnsafeArchiveError, match=rf"model.tar.gz: member '{name}': {message}"),
        open_model_source(archive, FixOptions(), work_dir=tmp_path),
    ):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.tar.gz"]  # no work folder left


def test_params_claiming_25_million_arrays_fail_at_once(model_dir: Path, tmp_path: Path) -> None:
    """The issue's params file (2.9 GB of memory and minutes before): refused from its header."""
    params = model_dir / "model_algo_1-0000.params"
    with params.open("wb") as stream:
        stream.write(struct.pack("<QQQ", 0x112, 0, 25_000_000))
        stream.truncate(24 + 100_000_000 + 8)  # sparse zeros: 25 million empty arrays, no keys
    started = time.perf_counter()
    tracemalloc.start()
    try:
        with pytest.raises(CorruptParamsError, match="claims 25000000 arrays; at most 16384 are accepted"):
            fix_model(model_dir, tmp_path / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 2
    assert peak < 16 << 20


@pytest.mark.parametrize("name", ["../model_algo_1", "sub/model_algo_1"])
def test_a_model_name_with_a_path_never_matches_a_file(model_dir: Path, name: str) -> None:
    with pytest.raises(InputNotFoundError, match="not found"):
        choose_model_files(model_dir, {p.name for p in model_dir.iterdir()}, name)


@pytest.mark.parametrize("name", ["name\n", "name\r\n", "name\nx", "\nname"])
def test_check_name_refuses_line_breaks_naming_the_parameter_and_the_rule(name: str) -> None:
    with pytest.raises(OptionError) as info:
        check_name(name, "--rename")
    assert str(info.value) == (
        f"--rename {name!r}: must start with a letter or digit and use only letters, digits, "
        "'.', '_' and '-' (no path, no '..', no line break, not ending in '.')"
    )
