"""State shared by the extension's services: settings, the server's own URL, background work."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import boto3
from botocore.config import Config

from emulator.settings import EmulatorSettings

log = logging.getLogger("emulator")


@dataclass
class Runtime:
    """The running extension. Background jobs call the emulator back over HTTP with boto3."""

    settings: EmulatorSettings
    endpoint_url: str
    threads: list[threading.Thread] = field(default_factory=list)
    current: ClassVar[Runtime | None] = None

    @classmethod
    def get(cls) -> Runtime:
        """The runtime installed in this process."""
        if cls.current is None:
            raise RuntimeError("emulator extension is not installed: call emulator.extension.install()")
        return cls.current

    def client(self, service: str, region: str) -> Any:
        """A boto3 client of ``service`` pointed at this emulator."""
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id="emulator",
            aws_secret_access_key="emulator",
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        """Run ``target`` in a daemon thread; an exception is logged, never lost silently."""

        def guarded() -> None:
            try:
                target()
            except Exception:
                log.exception("emulator background job %s crashed", name)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()
