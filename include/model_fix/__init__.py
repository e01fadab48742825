"""Pure Python 3 model fix: a SageMaker SSD training model becomes the DeepLens deploy model.

Replaces mxnet-ssd's Python 2 ``deploy.py`` without mxnet: JSON graph surgery on the symbol,
the weights copied byte for byte. See :func:`fix_model` and :func:`repack_model_archive`.
"""

from __future__ import annotations

import importlib

# Public names and the submodule each lives in. They load on first use (PEP 562), so a command
# that fixes a folder does not pay for tarfile, gzip and hashlib at start-up. The package's logger
# has a NullHandler (added by model_fix.log when logging is first used).
_EXPORTS = {
    "archive": ("ExtractLimits", "list_members", "safe_extract", "sha256_file", "write_reproducible_tar"),
    "errors": (
        "CorruptArchiveError",
        "CorruptParamsError",
        "CorruptSymbolError",
        "HyperparamsError",
        "InputNotFoundError",
        "ModelFixError",
        "NotSSDGraphError",
        "NumClassesMismatchError",
        "OptionError",
        "OverwriteRefusedError",
        "ParamsMismatchError",
        "UnsafeArchiveError",
    ),
    "fix": ("FixOptions", "FixResult", "find_model_files", "fix_model"),
    "params_file": ("ParamEntry", "read_params_index", "read_params_keys"),
    "repack": ("RepackResult", "repack_model", "repack_model_archive"),
    "ssd": (
        "DeployConversion",
        "DetectionSettings",
        "GraphKind",
        "classify_graph",
        "count_classes",
        "find_ssd_tensors",
        "to_deploy_graph",
    ),
    "symbol_json": ("dumps_symbol", "load_symbol", "parse_symbol"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'model_fix' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"model_fix.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF])


__all__ = sorted(_MODULE_OF)
