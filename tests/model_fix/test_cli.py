"""Tests for model_fix.cli, deploy.py and ``python -m model_fix``: deploy.py's command line, in Python 3."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from model_fix.cli import main

INCLUDE = Path(__file__).resolve().parents[2] / "include"
SEED_ARGS = ["--network", "vgg16_reduced", "--prefix", "model/jhg_choc_model_algo_1", "--nms", "0.45"]


@pytest.fixture
def seed_layout(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The seed's working folder: model/ holding the artefacts renamed to jhg_choc_model_algo_1."""
    work = tmp_path / "mxnet-ssd"
    (work / "model").mkdir(parents=True)
    for name in ("model_algo_1-symbol.json", "model_algo_1-0000.params"):
        shutil.copyfile(
            model_dir / name, work / "model" / name.replace("model_algo_1", "jhg_choc_model_algo_1")
        )
    monkeypatch.chdir(work)
    return work


def _detection(path: Path) -> dict:
    return json.loads(path.read_text())["nodes"][-1]


def test_the_seed_command_line_works_as_written(seed_layout: Path, capsys) -> None:
    # The seed's model has one class here; its own line said --num-class 2 for its two chocolate bars.
    status = main([*SEED_ARGS, "--data-shape", "480", "--num-class", "1"])
    out = capsys.readouterr()
    assert status == 0
    deploy = seed_layout / "model" / "deploy_jhg_choc_model_algo_1-symbol.json"
    params = seed_layout / "model" / "deploy_jhg_choc_model_algo_1-0000.params"
    assert f"Saved model: {Path('model/deploy_jhg_choc_model_algo_1-0000.params')}" in out.out
    assert f"Saved symbol: {Path('model/deploy_jhg_choc_model_algo_1-symbol.json')}" in out.out
    assert params.read_bytes() == (seed_layout / "model" / "jhg_choc_model_algo_1-0000.params").read_bytes()
    assert _detection(deploy)["attrs"]["force_suppress"] == "True"
    assert (
        "network 'vgg16_reduced' was given, but jhg_choc_model_algo_1-symbol.json has a resnet-50 base"
        in out.err
    )


def test_a_wrong_class_count_fails_with_a_clear_message(seed_layout: Path, capsys) -> None:
    assert main([*SEED_ARGS, "--data-shape", "480", "--num-class", "2"]) == 1
    err = capsys.readouterr().err
    assert (
        "deploy.py: error: num_classes 2 was given, but model/jhg_choc_model_algo_1-symbol.json predicts 1"
        in err
    )
    assert not (seed_layout / "model" / "deploy_jhg_choc_model_algo_1-symbol.json").exists()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--no-force-suppress"], "False"),
        (["--force", "false"], "False"),
        (["--force", "1"], "True"),
        ([], "True"),
    ],
)
def test_force_suppression_switches(seed_layout: Path, flags: list[str], expected: str) -> None:
    assert main(["--prefix", "model/jhg_choc_model_algo_1", "-q", *flags]) == 0
    deploy = seed_layout / "model" / "deploy_jhg_choc_model_algo_1-symbol.json"
    assert _detection(deploy)["attrs"]["force_suppress"] == expected


def test_nms_topk_and_epoch_options(seed_layout: Path) -> None:
    model = seed_layout / "model"
    (model / "jhg_choc_model_algo_1-0000.params").rename(model / "jhg_choc_model_algo_1-0012.params")
    assert (
        main(
            ["--prefix", "model/jhg_choc_model_algo_1", "--epoch", "12", "--topk", "50", "--nms", "0.3", "-q"]
        )
        == 0
    )
    attrs = _detection(model / "deploy_jhg_choc_model_algo_1-symbol.json")["attrs"]
    assert (attrs["nms_topk"], attrs["nms_threshold"]) == ("50", "0.3")
    assert (model / "deploy_jhg_choc_model_algo_1-0012.params").exists()


def test_a_prefix_ending_in_underscore_follows_deploy_py(seed_layout: Path, capsys) -> None:
    model = seed_layout / "model"
    for path in model.iterdir():
        path.rename(model / path.name.replace("jhg_choc_model_algo_1", "ssd_vgg16_reduced_300"))
    assert main(["--prefix", "model/ssd_", "--network", "vgg16_reduced", "--data-shape", "300", "-q"]) == 0
    assert (model / "deploy_ssd_vgg16_reduced_300-symbol.json").exists()
    assert main(["--prefix", "model/ssd_"]) == 1
    assert "ends in '_': deploy.py appends <network>_<data-shape>, give both" in capsys.readouterr().err


def test_sources_out_dir_and_archive(model_dir: Path, tmp_path: Path, capsys) -> None:
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
    assert main([str(archive)]) == 1
    assert "is an archive: give --out-dir, --output-tar or both" in capsys.readouterr().err
    out = tmp_path / "fixed"
    assert main([str(archive), "--out-dir", str(out), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "deploy_model_algo_1-0000.params",
        "deploy_model_algo_1-symbol.json",
        "hyperparams.json",
    ]
    repacked = tmp_path / "repacked.tar.gz"
    assert main([str(archive), "--output-tar", str(repacked), "--rename", "choc"]) == 0
    assert "Deploy model name: deploy_choc" in capsys.readouterr().out
    with tarfile.open(repacked) as tar:
        assert "deploy_choc-symbol.json" in tar.getnames()
    assert main([str(model_dir), "-q"]) == 0  # a folder: written beside its files
    assert (model_dir / "deploy_model_algo_1-symbol.json").exists()
    assert main([str(model_dir), "--rename", "x"]) == 1
    assert "--rename applies to --output-tar only" in capsys.readouterr().err
    assert main([]) == 1
    assert "give a source" in capsys.readouterr().err


@pytest.mark.parametrize("rename", ["name\n", "", "../choc", "choc."])
def test_a_bad_rename_is_refused_naming_the_option_and_the_rule(
    model_dir: Path, tmp_path: Path, capsys, rename: str
) -> None:
    """``$`` let "name\n" through (the archive then held 'name\n-symbol.json'): the whole name must match."""
    repacked = tmp_path / "repacked.tar.gz"
    assert main([str(model_dir), "--output-tar", str(repacked), "--rename", rename, "-q"]) == 1
    assert capsys.readouterr().err == (
        f"deploy.py: error: --rename {rename!r}: must start with a letter or digit and use only letters, "
        "digits, '.', '_' and '-' (no path, no '..', no line break, not ending in '.')\n"
    )
    assert not repacked.exists()
    assert not list(model_dir.glob("deploy_*"))


def test_usage_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--force", "maybe"])
    assert info.value.code == 2
    assert "expected true or false, got 'maybe'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--force", "true", "--no-force-suppress"])


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_deploy_py_runs_as_a_script_without_pythonpath(seed_layout: Path) -> None:
    result = _run(
        [str(INCLUDE / "model_fix" / "deploy.py"), *SEED_ARGS, "--data-shape", "480", "--num-class", "1"],
        seed_layout,
    )
    assert result.returncode == 0, result.stderr
    assert "Saved symbol: model/deploy_jhg_choc_model_algo_1-symbol.json" in result.stdout


def test_python_m_model_fix(seed_layout: Path) -> None:
    env_args = ["-m", "model_fix", "--prefix", "model/jhg_choc_model_algo_1", "--num-class", "3"]
    result = subprocess.run(
        [sys.executable, *env_args],
        cwd=seed_layout,
        env={**os.environ, "PYTHONPATH": str(INCLUDE)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "error: num_classes 3 was given" in result.stderr
