"""Wait for a deployment's final status: one polling loop for the trigger and the blocking mode."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from deeplens_pipeline.deploy.base import DeploymentStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollOutcome:
    """How the wait ended: a final status, or the last status seen when attempts ran out."""

    status: DeploymentStatus | None
    attempts: int

    @property
    def timed_out(self) -> bool:
        """True when no final status arrived within the allowed attempts."""
        return self.status is None or not self.status.is_final


async def wait_for_final_status(
    get_status: Callable[[], Awaitable[DeploymentStatus]],
    *,
    poll_interval: float,
    max_attempts: int,
    describe: str = "deployment",
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    log: logging.Logger | logging.LoggerAdapter = logger,
) -> PollOutcome:
    """Ask ``get_status`` until it is final or ``max_attempts`` polls were made, logging every poll."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    if poll_interval < 0:
        raise ValueError(f"poll_interval must not be negative, got {poll_interval}")
    status: DeploymentStatus | None = None
    for attempt in range(1, max_attempts + 1):
        status = await get_status()
        log.info("%s: %s (poll %d of %d)", describe, status.describe(), attempt, max_attempts)
        if status.is_final:
            return PollOutcome(status, attempt)
        if attempt < max_attempts:
            await sleep(poll_interval)
    return PollOutcome(status, max_attempts)
