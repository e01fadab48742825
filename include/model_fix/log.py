"""The package's log, without importing :mod:`logging` at start-up.

``import logging`` is about 5 ms of a 60 ms ``model_fix`` command. The package keeps a
``NullHandler`` on its logger, so its records only go somewhere when the application
configures logging, which it cannot do without importing :mod:`logging`. Hence: when nothing
has imported it, a record is dropped here, exactly as the ``NullHandler`` would have done;
once something has, records go to ``logging.getLogger("model_fix...")`` as usual.
"""

from __future__ import annotations

import sys

#: ``logging``'s level numbers (fixed by the standard library).
INFO = 20
WARNING = 30


def log(name: str, level: int, message: str, *args: object) -> None:
    """Log ``message % args`` at ``level`` on logger ``name`` when :mod:`logging` is in use."""
    logging = sys.modules.get("logging")
    if logging is None:
        return
    root = logging.getLogger("model_fix")
    if not any(isinstance(handler, logging.NullHandler) for handler in root.handlers):
        root.addHandler(logging.NullHandler())
    logging.getLogger(name).log(level, message, *args)
