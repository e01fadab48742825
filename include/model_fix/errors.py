"""Exceptions raised by the model fix; every message names the file or parameter at fault."""

from __future__ import annotations


class ModelFixError(Exception):
    """Base class of every error the model fix raises on bad input."""


class InputNotFoundError(ModelFixError):
    """The model artefacts (symbol, params) cannot be found, or the choice is ambiguous."""


class OptionError(ModelFixError):
    """An option (nms threshold, topk, epoch, prefix, ...) has an invalid value."""


class CorruptSymbolError(ModelFixError):
    """The symbol file is not valid JSON or not an MXNet symbol graph."""


class NotSSDGraphError(ModelFixError):
    """The symbol graph is neither an SSD training graph nor an SSD deploy graph."""


class NumClassesMismatchError(ModelFixError):
    """The class count given (option or hyperparams.json) differs from the graph's."""


class HyperparamsError(ModelFixError):
    """hyperparams.json is not valid JSON, not an object, or holds an unusable value."""


class CorruptParamsError(ModelFixError):
    """The .params file is not an MXNet NDArray list, or is truncated."""


class ParamsMismatchError(ModelFixError):
    """The .params keys or shapes do not match the graph's arguments."""


class CorruptArchiveError(ModelFixError):
    """The model archive is not a readable tar.gz."""


class UnsafeArchiveError(ModelFixError):
    """A member of the model archive is unsafe to extract (path, type or size)."""


class OverwriteRefusedError(ModelFixError):
    """An output would overwrite one of the inputs."""
