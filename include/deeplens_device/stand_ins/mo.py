"""Stand-in for the DeepLens ``mo`` module (model optimisation), built on MXNet.

``mo.optimize(model_name, input_width, input_height, platform='mx', aux_inputs={})`` returns
``(error, model_path)`` as the device's does (AWS DeepLens Developer Guide, "Method mo.optimize"):
error 0 on success, 1 when the platform is not supported, 2 when the optimizer failed. It reads
``<models-dir>/<model_name>-symbol.json`` and ``<models-dir>/<model_name>-<epoch:04d>.params`` and
writes ``<output-dir>/mxnet_<model_name>_FP16_FUSED.xml`` (+ ``.bin``), the path the device returns
(the AWS samples load ``/opt/awscam/artifacts/mxnet_deploy_ssd_resnet50_300_FP16_FUSED.xml``).

Both folders default to ``$DEEPLENS_AWSCAM_ARTIFACTS``, else the device's ``/opt/awscam/artifacts``.
Refused as the device's optimizer refuses them (error 2, reason on stderr): input sizes outside
1..1024, missing model files, a graph MXNet cannot load or infer shapes for, weights missing or of
the wrong shape, a graph with more inputs than ``data`` (e.g. SageMaker's training graph, with its
``label``: the model must first go through ``deploy.py``/``model_fix``), unknown ``aux_inputs``.

``aux_inputs`` (the device's MXNet entries): ``--img-format`` ``BGR`` (default: the model takes the
camera's BGR frames as they are) or ``RGB`` (the optimiser folds a channel swap into the model,
like OpenVINO's ``--reverse_input_channels``); ``--precision`` ``FP16`` (default; weights are
rounded to half precision, as on the GPU) or ``FP32``; ``--fuse`` ``ON``/``OFF``; ``--models-dir``;
``--output-dir``; ``--epoch`` (default 0). Only MXNet models are supported here: the device also
optimises Caffe and TensorFlow models, which this stand-in answers with error 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import _deeplens_ir as ir

ARTIFACTS_ENV = "DEEPLENS_AWSCAM_ARTIFACTS"
DEVICE_ARTIFACTS_DIR = "/opt/awscam/artifacts"
MAX_INPUT_SIZE = 1024
SUCCESS, PLATFORM_NOT_SUPPORTED, OPTIMIZER_FAILED = 0, 1, 2
MXNET_PLATFORMS = ("mx", "mxnet")
OTHER_DEVICE_PLATFORMS = ("caffe", "tf", "tensorflow")
AUX_CHOICES = {
    "--img-format": ("BGR", "RGB"),
    "--precision": ("FP16", "FP32", "half", "float"),
    "--fuse": ("ON", "OFF"),
}
AUX_FREE = ("--models-dir", "--output-dir", "--epoch")


class OptimizerError(Exception):
    """The optimizer failed; the message is what it prints."""


def artifacts_dir() -> Path:
    """Where the device keeps models: ``$DEEPLENS_AWSCAM_ARTIFACTS`` or ``/opt/awscam/artifacts``."""
    return Path(os.environ.get(ARTIFACTS_ENV) or DEVICE_ARTIFACTS_DIR)


def _say(level: str, message: str) -> None:
    print(f"[ {level} ]  {message}", file=sys.stderr, flush=True)


def _size(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INPUT_SIZE:
        raise OptimizerError(f"{what} must be an integer in 1..{MAX_INPUT_SIZE}, got {value!r}")
    return value


def _options(aux_inputs: dict) -> dict:
    if not isinstance(aux_inputs, dict):
        raise OptimizerError(f"aux_inputs must be a dict, got {type(aux_inputs).__name__}")
    unknown = sorted(set(aux_inputs) - set(AUX_CHOICES) - set(AUX_FREE))
    if unknown:
        raise OptimizerError(f"unrecognized arguments: {' '.join(unknown)}")
    options = {"--img-format": "BGR", "--precision": "FP16", "--fuse": "ON", "--epoch": 0}
    options["--models-dir"] = options["--output-dir"] = str(artifacts_dir())
    options.update(aux_inputs)
    for key, choices in AUX_CHOICES.items():
        if options[key] not in choices:
            raise OptimizerError(f"{key} {options[key]!r} is not one of {list(choices)}")
    try:
        options["--epoch"] = int(options["--epoch"])
    except (TypeError, ValueError):
        raise OptimizerError(f"--epoch {options['--epoch']!r} is not an integer") from None
    options["--precision"] = {"half": "FP16", "float": "FP32"}.get(
        options["--precision"], options["--precision"]
    )
    return options


def _load(symbol_path: Path, params_path: Path, width: int, height: int):
    import mxnet as mx

    for path in (symbol_path, params_path):
        if not path.is_file():
            raise OptimizerError(f"Specified input model does not exist: {path}")
    try:
        symbol = mx.sym.load(str(symbol_path))
        saved = mx.nd.load(str(params_path))
    except Exception as exc:
        raise OptimizerError(
            f"The following error happened while loading mxnet model {symbol_path}: {exc}"
        ) from exc
    weights = {}
    for key, value in saved.items():
        kind, _, name = key.partition(":")
        if kind not in ("arg", "aux") or not name:
            raise OptimizerError(f"{params_path}: key {key!r} is not arg:<name> or aux:<name>")
        weights[name] = value
    inputs = [n for n in symbol.list_arguments() if n not in weights]
    if inputs != ["data"]:
        raise OptimizerError(
            f"No or multiple placeholders in the model, but only one shape is provided, cannot set it "
            f"(inputs without weights: {inputs}; a SageMaker training graph must be converted with "
            "deploy.py first)"
        )
    try:
        arg_shapes, _, aux_shapes = symbol.infer_shape(data=(1, 3, height, width))
    except Exception as exc:
        raise OptimizerError(
            f"Stopped shape/value propagation at input data (1, 3, {height}, {width}): {exc}"
        ) from exc
    expected = dict(zip(symbol.list_arguments(), arg_shapes, strict=True))
    expected.update(zip(symbol.list_auxiliary_states(), aux_shapes, strict=True))
    for name, shape in expected.items():
        if name == "data":
            continue
        if name not in weights:
            raise OptimizerError(f"{params_path}: no value for {name}")
        if tuple(weights[name].shape) != tuple(shape):
            raise OptimizerError(
                f"{params_path}: {name} has shape {weights[name].shape}, the graph needs {shape}"
            )
    return symbol, {
        f"{'aux' if n in symbol.list_auxiliary_states() else 'arg'}:{n}": weights[n]
        for n in expected
        if n != "data"
    }


def optimize(model_name, input_width, input_height, platform="mx", aux_inputs=None):
    """Optimise ``model_name`` for a ``input_width`` x ``input_height`` input; ``(error, model_path)``."""
    if str(platform).lower() not in MXNET_PLATFORMS:
        if str(platform).lower() in OTHER_DEVICE_PLATFORMS:
            _say("ERROR", f"platform {platform!r}: this DeepLens stand-in optimises MXNet models only")
        else:
            _say("ERROR", f"platform {platform!r} is not supported")
        return PLATFORM_NOT_SUPPORTED, ""
    try:
        width = _size(input_width, "input_width")
        height = _size(input_height, "input_height")
        options = _options(aux_inputs or {})
        models = Path(options["--models-dir"])
        symbol, weights = _load(
            models / f"{model_name}-symbol.json",
            models / "{}-{:04d}.params".format(model_name, options["--epoch"]),
            width,
            height,
        )
        output = Path(options["--output-dir"])
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OptimizerError(f"Failed to create directory {output}. Permission denied! ({exc})") from exc
        return SUCCESS, str(_write(model_name, symbol, weights, width, height, options, output))
    except OptimizerError as exc:
        _say("ERROR", str(exc))
        return OPTIMIZER_FAILED, ""


def _write(model_name, symbol, weights, width, height, options, output: Path) -> Path:
    import mxnet as mx
    import numpy as np

    precision, fused = options["--precision"], options["--fuse"] == "ON"
    xml_path = output / ir.model_file_name(model_name, precision, fused, "xml")
    bin_path = output / ir.model_file_name(model_name, precision, fused, "bin")
    if precision == "FP16":
        weights = {
            k: mx.nd.array(v.asnumpy().astype(np.float16).astype(np.float32)) for k, v in weights.items()
        }
    mx.nd.save(str(bin_path), weights)
    model = ir.OptimizedModel(
        model_name, symbol.tojson(), bin_path, width, height, options["--img-format"], precision
    )
    ir.write_model_file(xml_path, model)
    _say("SUCCESS", f"Generated IR model: {xml_path} (weights {bin_path.name})")
    return xml_path
