"""SageMaker's object-detection `model.tar.gz`: write one, and read one back.

Layout (as the built-in algorithm writes it, members at the archive's top level):
`model_algo_1-symbol.json` (the training graph), `model_algo_1-0000.params` (MXNet's NDArray save
format, keys `arg:<name>` and `aux:<name>`) and `hyperparams.json` (every hyperparameter of the
job, defaults filled in, all values strings).
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

import mxnet as mx

PREFIX = "model_algo_1"
EPOCH = 0

# The built-in algorithm's hyperparameters with their defaults, as hyperparams.json spells them.
# num_classes and num_training_samples are required (no default).
HYPERPARAMETER_DEFAULTS: dict[str, str] = {
    "_kvstore": "device",
    "_num_kv_servers": "auto",
    "_tuning_objective_metric": "",
    "base_network": "vgg-16",
    "early_stopping": "False",
    "early_stopping_min_epochs": "10",
    "early_stopping_patience": "5",
    "early_stopping_tolerance": "0.0",
    "epochs": "30",
    "freeze_layer_pattern": "",
    "image_shape": "300",
    "kv_store": "device",
    "label_width": "350",
    "learning_rate": "0.001",
    "lr_scheduler_factor": "0.1",
    "lr_scheduler_step": "",
    "mini_batch_size": "32",
    "momentum": "0.9",
    "nms_threshold": "0.45",
    "nms_topk": "400",
    "optimizer": "sgd",
    "overlap_threshold": "0.5",
    "use_pretrained_model": "1",
    "weight_decay": "0.0005",
}
REQUIRED_HYPERPARAMETERS: tuple[str, ...] = ("num_classes", "num_training_samples")


def artifact_names(prefix: str = PREFIX, epoch: int = EPOCH) -> tuple[str, str]:
    """(symbol file name, params file name) for a checkpoint prefix and epoch."""
    return f"{prefix}-symbol.json", f"{prefix}-{epoch:04d}.params"


def full_hyperparameters(given: Mapping[str, str]) -> dict[str, str]:
    """hyperparams.json's content: the defaults overlaid with the job's known hyperparameters."""
    known = set(HYPERPARAMETER_DEFAULTS) | set(REQUIRED_HYPERPARAMETERS)
    merged = dict(HYPERPARAMETER_DEFAULTS)
    merged.update({k: str(v) for k, v in given.items() if k in known})
    return merged


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

    The archive is written to a temporary file beside `out` and renamed into place, so a reader
    never sees a half-written archive.
    """
    expected = set(symbol.list_arguments()) - {"data", "label"}
    missing = sorted(expected - set(arg_params))
    if missing:
        raise ValueError(f"arg_params lack {len(missing)} graph arguments, e.g. {missing[:3]}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    symbol_name, params_name = artifact_names()
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        params_path = Path(tmp) / params_name
        save_params(params_path, arg_params, aux_params)
        members = {
            "hyperparams.json": json.dumps(full_hyperparameters(hyperparameters)).encode(),
            symbol_name: symbol.tojson().encode(),
        }
        partial = Path(tmp) / "model.tar.gz"
        with tarfile.open(partial, "w:gz") as tar:
            for name, payload in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(payload))
            tar.add(params_path, arcname=params_name)
        partial.replace(out)
    return out


def read_model_archive(path: Path) -> tuple[mx.sym.Symbol, dict, dict, dict[str, str]]:
    """(symbol, arg_params, aux_params, hyperparameters) from a SageMaker-style model.tar.gz."""
    symbol_name, params_name = artifact_names()
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(path, "r:gz") as tar:
        names = sorted(tar.getnames())
        if names != sorted(["hyperparams.json", symbol_name, params_name]):
            raise ValueError(f"{path}: unexpected members {names}")
        tar.extractall(tmp, filter="data")
        symbol = mx.sym.load(str(Path(tmp) / symbol_name))
        loaded = mx.nd.load(str(Path(tmp) / params_name))
        hyper = json.loads((Path(tmp) / "hyperparams.json").read_text())
    arg = {k[4:]: v for k, v in loaded.items() if k.startswith("arg:")}
    aux = {k[4:]: v for k, v in loaded.items() if k.startswith("aux:")}
    return symbol, arg, aux, hyper
