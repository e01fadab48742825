"""The embedded AWS emulator: moto in server mode on 127.0.0.1, plus our extension.

``python -m emulator.server`` serves until interrupted and prints ``EMULATOR_URL=<url>``; tests and
the demo start it in-process with :class:`EmulatorServer`. Settings come from ``EMULATOR_*``
environment variables (see :mod:`emulator.settings`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from moto.moto_server import werkzeug_app
from moto.server import ThreadedMotoServer

from emulator import extension
from emulator.extension.runtime import Runtime
from emulator.settings import EmulatorSettings


class EmulatorServer:
    """moto's threaded server with the extension installed; ``url`` once started."""

    def __init__(self, settings: EmulatorSettings | None = None, host: str = "127.0.0.1", port: int = 0):
        self.settings = settings or EmulatorSettings.from_env()
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.url = ""
        self.runtime: Runtime | None = None

    def start(self) -> str:
        """Start serving; return the endpoint URL."""
        # moto's server answers every origin by default (flask-cors over the whole app); S3 answers
        # a browser only as the bucket's CORS rules allow (moto implements those rules): keep that.
        werkzeug_app.DISABLE_GLOBAL_CORS = True
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        self.runtime = extension.install(self.settings, self.url)
        return self.url

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 inside a container)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--url-file", type=Path, help="also write the URL to this file once serving")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = EmulatorServer(host=args.host, port=args.port)
    url = server.start()
    print(f"EMULATOR_URL={url}", flush=True)
    if args.url_file:
        args.url_file.write_text(url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
