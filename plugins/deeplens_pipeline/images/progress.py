"""Progress of a long loop: counts and rate in the log at intervals, or any callback (the CLI's bar)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

ProgressCallback = Callable[[str, int, int], None]
"""``callback(stage, done, total)``, called after every finished item."""


class ProgressLog:
    """A :data:`ProgressCallback` that logs ``stage: done/total (pct) rate/s, eta`` every ``interval`` s.

    Call it with ``done=0`` when a stage starts (the rate is measured from then); the start and the
    last item of a stage are always logged.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = logger or logging.getLogger("deeplens_pipeline.images")
        self.interval = interval
        self.clock = clock
        self._started: dict[str, float] = {}
        self._last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self.clock()
        start = self._started.setdefault(stage, now)
        last = self._last.get(stage)
        if last is not None and done < total and now - last < self.interval:
            return
        self._last[stage] = now
        elapsed = now - start
        rate = done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * done / total if total else 100.0
        if done >= total:
            tail = f"done in {elapsed:.1f} s"
        elif rate > 0:
            tail = f"eta {(total - done) / rate:.0f} s"
        else:
            tail = "starting"
        self.log.info("%s: %d/%d (%.0f%%) %.1f/s, %s", stage, done, total, pct, rate, tail)
