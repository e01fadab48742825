"""The simulated DeepLens's SSH server (asyncssh) on 127.0.0.1: what the ``ssh`` deploy method reaches.

A DeepLens runs OpenSSH for its ``aws_cam`` user. This server, like it:

- has its own host key (generated per device; :meth:`DeviceSshServer.known_hosts_line` is the line a
  client's ``known_hosts`` needs, so ``StrictHostKeyChecking=yes`` works and a wrong key is refused
  by the client);
- accepts public-key authentication only, for ``aws_cam`` with the one authorized client key
  (``authorized_keys``); passwords and other users are refused;
- runs each exec request through the user's shell (``bash -c <command>``) on the device
  (:class:`.namespace.DeviceShell`), forwarding stdin, stdout, stderr and the exit status;
- serves SFTP over the device root (OpenSSH 9's ``scp`` speaks SFTP) and legacy ``scp -O``. Paths
  are device paths; only the device's own folders (``/opt``, ``/tmp``, ``/home``, ``/greengrass``)
  exist over SFTP, as the rest of the file system is the host's.

Interactive shells (no command) are refused: the deployer never asks for one.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import threading
from pathlib import Path
from typing import Any

import asyncssh

from emulator.simulated_deeplens.device_root import DEVICE_USER, HOME, SIMULATOR_DIR
from emulator.simulated_deeplens.namespace import DeviceShell

log = logging.getLogger("emulator.simulated_deeplens.ssh")

_CHUNK = 65536


class _DeviceSftp(asyncssh.SFTPServer):
    """SFTP over the device root; the simulator's own folder is not the device's."""

    def map_path(self, path: bytes) -> bytes:
        mapped = super().map_path(path)
        parts = self.reverse_map_path(mapped).lstrip(b"/").split(b"/", 1)
        if parts[0] == SIMULATOR_DIR.lstrip("/").encode():
            raise asyncssh.SFTPPermissionDenied("Permission denied")
        return mapped

    def exit(self) -> None:
        """End the session with exit status 0, as OpenSSH's sftp-server subsystem does.

        OpenSSH's ``scp`` (SFTP mode) fails a copy whose session ends without an exit status,
        which asyncssh's SFTP server does not send by itself.
        """
        channel = self.channel
        if not channel.is_closing():
            channel.exit(0)


class _Auth(asyncssh.SSHServer):
    def __init__(self, user: str, key: asyncssh.SSHKey) -> None:
        self.user, self.key = user, key

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        accepted = username == self.user and key.public_data == self.key.public_data
        if not accepted:
            log.info("refused public key %s for %s", key.get_fingerprint(), username)
        return accepted


class DeviceSshServer:
    """An SSH server for the device whose commands run through ``shell``.

    ``client_public_key``: the authorized key (OpenSSH public key text or a ``.pub`` file path).
    """

    def __init__(
        self,
        shell: DeviceShell,
        client_public_key: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = DEVICE_USER,
        host_key: asyncssh.SSHKey | None = None,
    ) -> None:
        self.shell = shell
        text = Path(client_public_key).read_text() if _is_file(client_public_key) else str(client_public_key)
        self.client_key = asyncssh.import_public_key(text.strip())
        self.host, self.port, self.user = host, port, user
        self.host_key = host_key or asyncssh.generate_private_key("ssh-ed25519")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="device-sshd", daemon=True)
        self._server: Any = None

    def start(self) -> int:
        """Start listening; the port."""
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(30)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("simulated DeepLens SSH server on %s:%s", self.host, self.port)
        return self.port

    async def _listen(self) -> Any:
        root = str(self.shell.root.path)
        return await asyncssh.create_server(
            lambda: _Auth(self.user, self.client_key),
            self.host,
            self.port,
            server_host_keys=[self.host_key],
            process_factory=self._handle,
            sftp_factory=lambda chan: _DeviceSftp(chan, chroot=root),
            allow_scp=True,
            line_editor=False,
            encoding=None,
        )

    def stop(self) -> None:
        """Stop listening and close the sessions."""
        if self._server is not None:
            self._server.close()
            asyncio.run_coroutine_threadsafe(self._server.wait_closed(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def known_hosts_line(self) -> str:
        """The ``known_hosts`` line of this server's host key (``[host]:port`` unless port 22)."""
        key = self.host_key.export_public_key("openssh").decode().split()
        where = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{where} {key[0]} {key[1]}\n"

    async def _handle(self, process: asyncssh.SSHServerProcess) -> None:
        command = process.command
        if command is None:
            process.stderr.write(b"This simulated DeepLens runs commands only (no interactive shell).\n")
            process.exit(1)
            return
        argv = self.shell.argv(["/bin/bash", "-c", command], cwd=HOME)
        log.info("ssh exec: %s", command)
        child = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.shell.environment(),
        )
        feeding = asyncio.ensure_future(_feed(process.stdin, child.stdin))
        await asyncio.gather(_copy(child.stdout, process.stdout), _copy(child.stderr, process.stderr))
        code = await child.wait()
        feeding.cancel()
        process.exit(code if code >= 0 else 128 - code)


async def _feed(source: asyncssh.SSHReader, sink: asyncio.StreamWriter | None) -> None:
    if sink is None:
        return
    try:
        while data := await source.read(_CHUNK):
            sink.write(data)
            await sink.drain()
    except (OSError, asyncssh.Error):
        pass
    finally:
        sink.close()


async def _copy(source: asyncio.StreamReader | None, sink: asyncssh.SSHWriter) -> None:
    if source is None:
        return
    while data := await source.read(_CHUNK):
        sink.write(data)


def _is_file(value: str | Path) -> bool:
    if isinstance(value, Path):
        return True
    return not value.lstrip().startswith(("ssh-", "ecdsa-", "sk-")) and Path(value).is_file()
