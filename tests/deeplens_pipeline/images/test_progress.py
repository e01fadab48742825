"""Progress lines: counts and rate at intervals."""

from __future__ import annotations

import logging

from deeplens_pipeline.images.progress import ProgressLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_logged_at_intervals_with_rate_and_eta(caplog):
    clock = Clock()
    progress = ProgressLog(logging.getLogger("test.progress"), interval=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        progress("preprocess", 0, 100)
        for done in range(1, 101):
            clock.now = done * 0.5  # 2 images per second
            progress("preprocess", done, 100)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "preprocess: 0/100 (0%) 0.0/s, starting"
    assert lines[1] == "preprocess: 20/100 (20%) 2.0/s, eta 40 s"
    assert lines[-1] == "preprocess: 100/100 (100%) 2.0/s, done in 50.0 s"
    assert len(lines) == 6  # the start, then every 10 s (the end falls on one)
