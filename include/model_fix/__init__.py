"""Pure Python 3 model fix: a SageMaker SSD training model becomes the DeepLens deploy model.

Replaces mxnet-ssd's Python 2 ``deploy.py`` without mxnet: JSON graph surgery on the symbol,
the weights copied byte for byte. See :func:`fix_model` and :func:`repack_model_archive`.
"""

from __future__ import annotations

import logging

from model_fix.archive import ExtractLimits, safe_extract, sha256_file, write_reproducible_tar
from model_fix.errors import (
    CorruptArchiveError,
    CorruptParamsError,
    CorruptSymbolError,
    HyperparamsError,
    InputNotFoundError,
    ModelFixError,
    NotSSDGraphError,
    NumClassesMismatchError,
    OptionError,
    OverwriteRefusedError,
    ParamsMismatchError,
    UnsafeArchiveError,
)
from model_fix.fix import FixOptions, FixResult, find_model_files, fix_model
from model_fix.params_file import ParamEntry, read_params_index, read_params_keys
from model_fix.repack import RepackResult, repack_model, repack_model_archive
from model_fix.ssd import (
    DeployConversion,
    DetectionSettings,
    GraphKind,
    classify_graph,
    count_classes,
    find_ssd_tensors,
    to_deploy_graph,
)
from model_fix.symbol_json import dumps_symbol, load_symbol, parse_symbol

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "CorruptArchiveError",
    "CorruptParamsError",
    "CorruptSymbolError",
    "DeployConversion",
    "DetectionSettings",
    "ExtractLimits",
    "FixOptions",
    "FixResult",
    "GraphKind",
    "HyperparamsError",
    "InputNotFoundError",
    "ModelFixError",
    "NotSSDGraphError",
    "NumClassesMismatchError",
    "OptionError",
    "OverwriteRefusedError",
    "ParamEntry",
    "ParamsMismatchError",
    "RepackResult",
    "UnsafeArchiveError",
    "classify_graph",
    "count_classes",
    "dumps_symbol",
    "find_model_files",
    "find_ssd_tensors",
    "fix_model",
    "load_symbol",
    "parse_symbol",
    "read_params_index",
    "read_params_keys",
    "repack_model",
    "repack_model_archive",
    "safe_extract",
    "sha256_file",
    "to_deploy_graph",
    "write_reproducible_tar",
]
