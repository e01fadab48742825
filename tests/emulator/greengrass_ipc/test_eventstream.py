"""The event stream framing: round trips, and corrupted bytes are refused."""

from __future__ import annotations

import io
import uuid

import pytest

from emulator.greengrass_ipc import eventstream as es


def _message() -> es.Message:
    return es.Message(
        [
            es.int32(es.MESSAGE_TYPE, es.APPLICATION_MESSAGE),
            es.string(es.OPERATION, "aws.greengrass#PublishToIoTCore"),
            es.Header("flag", es.BOOL_TRUE, True),
            es.Header("off", es.BOOL_FALSE, False),
            es.Header("b", es.BYTE, -3),
            es.Header("s", es.INT16, 300),
            es.Header("l", es.INT64, 2**40),
            es.Header("buf", es.BYTE_BUF, b"\x00\xff"),
            es.Header("t", es.TIMESTAMP, 1_700_000_000_000),
            es.Header("id", es.UUID, uuid.UUID(int=7)),
        ],
        b'{"topicName": "a/b"}',
    )


def test_round_trip_keeps_every_header_type_and_the_payload() -> None:
    message = _message()
    decoded = es.decode(es.encode(message))
    assert decoded == message
    assert decoded.header(":MESSAGE-TYPE") == es.APPLICATION_MESSAGE


def test_prelude_lengths_match_the_specification() -> None:
    wire = es.encode(es.Message([es.string("a", "b")], b"xyz"))
    headers_length = 1 + 1 + 1 + 2 + 1  # name length, name, type, value length, value
    assert int.from_bytes(wire[:4], "big") == len(wire) == 12 + headers_length + 3 + 4
    assert int.from_bytes(wire[4:8], "big") == headers_length


@pytest.mark.parametrize("position", [2, 9, 14, -1])
def test_a_flipped_byte_is_refused(position: int) -> None:
    wire = bytearray(es.encode(_message()))
    wire[position] ^= 0x01
    with pytest.raises(es.FramingError):
        es.decode(bytes(wire))


def test_read_message_reads_back_to_back_messages_then_ends() -> None:
    first, second = _message(), es.Message([es.int32(es.STREAM_ID, 1)], b"")
    stream = io.BytesIO(es.encode(first) + es.encode(second))
    assert es.read_message(stream) == first
    assert es.read_message(stream) == second
    assert es.read_message(stream) is None


def test_a_message_cut_short_is_an_error() -> None:
    wire = es.encode(_message())
    with pytest.raises(es.FramingError, match="ended inside"):
        es.read_message(io.BytesIO(wire[:-5]))
