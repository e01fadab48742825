"""SageMaker's object-detection `model.tar.gz`: write one, and read one back.

Layout (as the built-in algorithm writes it, members at the archive's top level):
`model_algo_1-symbol.json` (the training graph), `model_algo_1-0000.params` (MXNet's NDArray save
format, keys `arg:<name>` and `aux:<name>`) and `hyperparams.json` (every hyperparameter of the
job, defaults filled in, all values strings).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import mxnet as mx

from ml_tools.hyperparameters import full_hyperparameters
from model_fix.archive import safe_extract, write_reproducible_tar
from model_fix.hyperparams import HYPERPARAMS_FILE

PREFIX = "model_algo_1"
EPOCH = 0


def artifact_names(prefix: str = PREFIX, epoch: int = EPOCH) -> tuple[str, str]:
    """(symbol file name, params file name) for a checkpoint prefix and epoch."""
    return f"{prefix}-symbol.json", f"{prefix}-{epoch:04d}.params"


def save_params(
    path: Path, arg_params: Mapping[str, mx.nd.NDArray], aux_params: Mapping[str, mx.nd.NDArray]
) -> None:
    """Save weights the way `mx.model.save_checkpoint` does (`arg:`/`aux:` keys)."""
    data = {f"arg:{k}": v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    data.update({f"aux:{k}": v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    mx.nd.save(str(path), data)


def write_model_archive(
    out: Path,
    symbol: mx.sym.Symbol,
    arg_params: Mapping[str, mx.nd.NDArray],
    aux_params: Mapping[str, mx.nd.NDArray],
    hyperparameters: Mapping[str, str],
) -> Path:
    """Write `out` (a model.tar.gz) laid out as SageMaker's; returns `out`.

    The members are staged in a temporary folder beside `out` and packed by the model fix's
    reproducible tar writer, which renames the finished archive into place: a reader never sees
    a half-written archive.
    """
    expected = set(symbol.list_arguments()) - {"data", "label"}
    missing = sorted(expected - set(arg_params))
    if missing:
        raise ValueError(f"arg_params lack {len(missing)} graph arguments, e.g. {missing[:3]}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    symbol_name, params_name = artifact_names()
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        stage = Path(tmp)
        save_params(stage / params_name, arg_params, aux_params)
        (stage / symbol_name).write_text(symbol.tojson())
        (stage / HYPERPARAMS_FILE).write_text(json.dumps(full_hyperparameters(hyperparameters)))
        write_reproducible_tar(
            out, {name: stage / name for name in (HYPERPARAMS_FILE, symbol_name, params_name)}
        )
    return out


def read_model_archive(path: Path) -> tuple[mx.sym.Symbol, dict, dict, dict[str, str]]:
    """(symbol, arg_params, aux_params, hyperparameters) from a SageMaker-style model.tar.gz.

    Extracted with the model fix's safe extraction (regular files only, size limits).
    """
    symbol_name, params_name = artifact_names()
    with tempfile.TemporaryDirectory() as tmp:
        names = sorted(safe_extract(path, tmp))
        if names != sorted([HYPERPARAMS_FILE, symbol_name, params_name]):
            raise ValueError(f"{path}: unexpected members {names}")
        symbol = mx.sym.load(str(Path(tmp) / symbol_name))
        loaded = mx.nd.load(str(Path(tmp) / params_name))
        hyper = json.loads((Path(tmp) / HYPERPARAMS_FILE).read_text())
    arg = {k[4:]: v for k, v in loaded.items() if k.startswith("arg:")}
    aux = {k[4:]: v for k, v in loaded.items() if k.startswith("aux:")}
    return symbol, arg, aux, hyper
