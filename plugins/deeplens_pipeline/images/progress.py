"""Progress of a long loop: counts and rate in the log at intervals, or any callback (the CLI's bar)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

ProgressCallback = Callable[[str, int, int], None]
"""``callback(stage, done, total)``, called after every finished item."""


class ProgressLog:
    """A :data:`ProgressCallback` that logs ``stage: done/total (pct) rate/s, eta`` every ``interval`` s.

    Call it with ``done=0`` when a stage starts: the rate, the eta and ``done in`` are measured from
    then, so one instance serves one shard after another (the command line runs every shard with
    the same callback). A count that goes back, or a new total, starts the stage again too. The
    start and the last item of a stage are always logged.
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
        self._seen: dict[str, tuple[int, int]] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self.clock()
        before = self._seen.get(stage)
        if stage not in self._started or done == 0 or (before and (done < before[0] or total != before[1])):
            self._started[stage] = now
            self._last.pop(stage, None)
        self._seen[stage] = (done, total)
        start = self._started[stage]
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
