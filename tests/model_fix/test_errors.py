"""Tests for model_fix.errors: one base class the caller can catch, exported from the package."""

from __future__ import annotations

import inspect

import model_fix
from model_fix import errors


def test_every_error_is_a_model_fix_error_and_exported() -> None:
    classes = [
        cls for _, cls in inspect.getmembers(errors, inspect.isclass) if cls.__module__ == errors.__name__
    ]
    assert len(classes) >= 10
    for cls in classes:
        assert issubclass(cls, model_fix.ModelFixError)
        assert getattr(model_fix, cls.__name__) is cls
