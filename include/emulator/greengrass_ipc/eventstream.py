"""The AWS event stream binary framing, as the Greengrass nucleus's IPC socket carries it.

awscrt implements the framing in C and does not expose message encoding to Python, so it is
written here from the specification ("Event stream encoding", Amazon Transcribe / S3 Select
docs; ``aws-c-event-stream``): a 12-byte prelude (total length, headers length, CRC32 of the
first 8 bytes), the headers, the payload, then a CRC32 of everything before it. All integers
are big-endian. Each header is a 1-byte name length, the name, a 1-byte type and the value.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

PRELUDE_LENGTH = 12
CRC_LENGTH = 4
MAX_MESSAGE_LENGTH = 16 * 1024 * 1024
MAX_HEADERS_LENGTH = 128 * 1024

BOOL_TRUE, BOOL_FALSE, BYTE, INT16, INT32, INT64, BYTE_BUF, STRING, TIMESTAMP, UUID = range(10)

# The event-stream RPC protocol (awscrt.eventstream.rpc): message types, flags and headers.
APPLICATION_MESSAGE, APPLICATION_ERROR, PING, PING_RESPONSE, CONNECT, CONNECT_ACK = range(6)
PROTOCOL_ERROR, INTERNAL_ERROR = 6, 7
CONNECTION_ACCEPTED = 0x1
TERMINATE_STREAM = 0x2
MESSAGE_TYPE = ":message-type"
MESSAGE_FLAGS = ":message-flags"
STREAM_ID = ":stream-id"
VERSION = ":version"
CONTENT_TYPE = ":content-type"
SERVICE_MODEL_TYPE = "service-model-type"
OPERATION = "operation"


class FramingError(ValueError):
    """The bytes are not a valid event stream message (length, CRC or header encoding)."""


@dataclass(frozen=True)
class Header:
    """One header: its name, type code (``BOOL_TRUE`` ... ``UUID``) and value."""

    name: str
    type: int
    value: object


@dataclass
class Message:
    """A decoded event stream message."""

    headers: list[Header] = field(default_factory=list)
    payload: bytes = b""

    def header(self, name: str) -> object | None:
        """The value of the first header called ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((h.value for h in self.headers if h.name.lower() == wanted), None)


def string(name: str, value: str) -> Header:
    """A string header."""
    return Header(name, STRING, value)


def int32(name: str, value: int) -> Header:
    """A 32-bit integer header."""
    return Header(name, INT32, value)


def _encode_value(header: Header) -> bytes:
    kind, value = header.type, header.value
    if kind in (BOOL_TRUE, BOOL_FALSE):
        return b""
    if kind == BYTE:
        return struct.pack(">b", value)
    if kind == INT16:
        return struct.pack(">h", value)
    if kind == INT32:
        return struct.pack(">i", value)
    if kind in (INT64, TIMESTAMP):
        return struct.pack(">q", value)
    if kind in (BYTE_BUF, STRING):
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)  # type: ignore[arg-type]
        return struct.pack(">H", len(data)) + data
    if kind == UUID:
        return value.bytes if isinstance(value, uuid.UUID) else bytes(value)  # type: ignore[arg-type]
    raise FramingError(f"header {header.name!r}: unknown type {kind}")


def encode_headers(headers: list[Header]) -> bytes:
    """The headers section."""
    out = bytearray()
    for header in headers:
        name = header.name.encode("utf-8")
        if not 0 < len(name) < 256:
            raise FramingError(f"header name {header.name!r} must be 1-255 bytes")
        out += bytes([len(name)]) + name + bytes([header.type]) + _encode_value(header)
    return bytes(out)


def encode(message: Message) -> bytes:
    """The wire bytes of ``message``."""
    headers = encode_headers(message.headers)
    total = PRELUDE_LENGTH + len(headers) + len(message.payload) + CRC_LENGTH
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers + message.payload
    return body + struct.pack(">I", zlib.crc32(body))


def decode_headers(data: bytes) -> list[Header]:
    """Parse a headers section."""
    headers: list[Header] = []
    at = 0
    try:
        while at < len(data):
            name_length = data[at]
            name = data[at + 1 : at + 1 + name_length].decode("utf-8")
            at += 1 + name_length
            kind = data[at]
            at += 1
            value: object
            if kind == BOOL_TRUE:
                value = True
            elif kind == BOOL_FALSE:
                value = False
            elif kind == BYTE:
                (value,) = struct.unpack_from(">b", data, at)
                at += 1
            elif kind == INT16:
                (value,) = struct.unpack_from(">h", data, at)
                at += 2
            elif kind == INT32:
                (value,) = struct.unpack_from(">i", data, at)
                at += 4
            elif kind in (INT64, TIMESTAMP):
                (value,) = struct.unpack_from(">q", data, at)
                at += 8
            elif kind in (BYTE_BUF, STRING):
                (length,) = struct.unpack_from(">H", data, at)
                raw = data[at + 2 : at + 2 + length]
                if len(raw) != length:
                    raise FramingError(f"header {name!r}: value is cut short")
                value = raw.decode("utf-8") if kind == STRING else raw
                at += 2 + length
            elif kind == UUID:
                value = uuid.UUID(bytes=data[at : at + 16])
                at += 16
            else:
                raise FramingError(f"header {name!r}: unknown type {kind}")
            headers.append(Header(name, kind, value))
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise FramingError(f"malformed headers: {exc}") from exc
    return headers


def decode(frame: bytes) -> Message:
    """Parse one complete message, checking both CRCs."""
    if len(frame) < PRELUDE_LENGTH + CRC_LENGTH:
        raise FramingError(f"a message is at least 16 bytes, got {len(frame)}")
    total, headers_length, prelude_crc = struct.unpack_from(">III", frame)
    if zlib.crc32(frame[:8]) != prelude_crc:
        raise FramingError("prelude CRC mismatch")
    if total != len(frame):
        raise FramingError(f"message says {total} bytes, got {len(frame)}")
    if PRELUDE_LENGTH + headers_length + CRC_LENGTH > total:
        raise FramingError("headers are longer than the message")
    (message_crc,) = struct.unpack_from(">I", frame, total - CRC_LENGTH)
    if zlib.crc32(frame[: total - CRC_LENGTH]) != message_crc:
        raise FramingError("message CRC mismatch")
    headers = decode_headers(frame[PRELUDE_LENGTH : PRELUDE_LENGTH + headers_length])
    return Message(headers, bytes(frame[PRELUDE_LENGTH + headers_length : total - CRC_LENGTH]))


def _read_exactly(stream: BinaryIO, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = stream.read(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_message(stream: BinaryIO) -> Message | None:
    """The next message on ``stream``, or None at a clean end of stream."""
    prelude = _read_exactly(stream, PRELUDE_LENGTH)
    if prelude is None:
        return None
    total, headers_length, _ = struct.unpack(">III", prelude)
    if not PRELUDE_LENGTH + CRC_LENGTH <= total <= MAX_MESSAGE_LENGTH or headers_length > MAX_HEADERS_LENGTH:
        raise FramingError(f"refusing a message of {total} bytes with {headers_length} bytes of headers")
    rest = _read_exactly(stream, total - PRELUDE_LENGTH)
    if rest is None:
        raise FramingError("the stream ended inside a message")
    return decode(prelude + rest)
