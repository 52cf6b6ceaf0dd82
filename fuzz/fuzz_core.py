"""Atheris (libFuzzer for Python) harness for the sans-I/O core.

Not part of the default test run.  Run a fixed number of inputs with::

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/fuzz_core.py -runs=200000

(``-max_total_time=60`` for a time budget; a corpus directory as the last
argument keeps interesting inputs between runs.)  Each input is split by
its first byte into a target and its data; the properties checked:

* :class:`LineBuffer`: never holds more than ``max_line`` octets, every line
  ends in LF and fits the limit, and all the bytes fed come out (as lines,
  over-long markers or the unfinished tail).
* :func:`parse_command`: raises only :class:`PeerError` subclasses.
* :class:`ServerSession`: fed arbitrary bytes in arbitrary fragments, with
  logins accepted, TLS and UPDATE settled, it only ever produces well-formed
  replies (one status line <= 512 octets, CRLF only, dot-terminated bodies),
  never raises, and UPDATE removes only numbers that were DELE'd.
* :class:`BodyReader`: un-stuffing a :class:`DotStuffer` encoding of any
  bytes gives back the CRLF-normalised bytes, whatever the fragmentation.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from pop3suite.proto.commands import parse_command
    from pop3suite.proto.errors import AuthFailed, PeerError
    from pop3suite.proto.framing import (
        LINE_TOO_LONG,
        BodyReader,
        CrlfNormalizer,
        DotStuffer,
        LineBuffer,
    )
    from pop3suite.proto.limits import MAX_RESPONSE_LINE
    from pop3suite.proto.server import (
        Authenticate,
        Close,
        MessageInfo,
        Retrieve,
        Send,
        ServerSession,
        SessionOptions,
        StartTLS,
        State,
        Update,
    )

LISTING = tuple(MessageInfo(size, f"uid-{i}") for i, size in enumerate((10, 0, 5000, 77), 1))


def _check_reply(data: bytes) -> None:
    first, sep, rest = data.partition(b"\r\n")
    assert sep, data
    assert first.startswith((b"+OK", b"-ERR", b"+ ")), data
    assert len(first) + 2 <= MAX_RESPONSE_LINE, len(first)
    assert b"\r" not in first and b"\n" not in first
    if rest:
        assert rest == b".\r\n" or rest.endswith(b"\r\n.\r\n"), rest[-10:]


def _chunks(fdp: atheris.FuzzedDataProvider, data: bytes) -> list[bytes]:
    out, position = [], 0
    while position < len(data):
        size = fdp.ConsumeIntInRange(1, 64) if fdp.remaining_bytes() else len(data)
        out.append(data[position : position + size])
        position += size
    return out


def fuzz_line_buffer(fdp: atheris.FuzzedDataProvider) -> None:
    limit = fdp.ConsumeIntInRange(3, 300)
    data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4000))
    buffer = LineBuffer(limit)
    for chunk in _chunks(fdp, data):
        buffer.feed(chunk)
        while (line := buffer.next_line()) is not None:
            if line is not LINE_TOO_LONG:
                assert isinstance(line, bytes) and len(line) <= limit
        assert buffer.buffered <= limit, (buffer.buffered, limit)


def fuzz_parse_command(fdp: atheris.FuzzedDataProvider) -> None:
    line = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400))
    try:
        command = parse_command(line)
    except PeerError:
        return
    assert command.keyword.isupper() or not command.keyword.isalpha()


def fuzz_session(fdp: atheris.FuzzedDataProvider) -> None:
    session = ServerSession(
        SessionOptions(
            stls_available=fdp.ConsumeBool(),
            cleartext_login=fdp.ConsumeBool(),
            apop_timestamp="<1.2@x>" if fdp.ConsumeBool() else None,
            max_bad_commands=fdp.ConsumeIntInRange(1, 30),
        )
    )
    _check_reply(session.greeting())
    accept = fdp.ConsumeBool()
    data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 3000))
    marked: set[int] = set()
    for chunk in _chunks(fdp, data):
        session.receive_data(chunk)
        while (action := session.next_action()) is not None:
            if isinstance(action, Send):
                _check_reply(action.data)
                if action.data.startswith(b"+OK Message "):
                    marked.add(int(action.data.split()[2]))
            elif isinstance(action, Authenticate):
                if accept:
                    _check_reply(session.accept_login(action.username, LISTING))
                else:
                    _check_reply(session.reject_login(AuthFailed()))
            elif isinstance(action, StartTLS):
                _check_reply(action.reply)
                session.start_tls_discard()
                session.tls_started()
            elif isinstance(action, Retrieve):
                assert 1 <= action.number <= len(LISTING) and action.number not in session.deleted
                _check_reply(action.status_line)
            elif isinstance(action, Update):
                assert set(action.numbers) == session.deleted
                _check_reply(session.update_finished())
                assert session.state is State.CLOSED
            elif isinstance(action, Close):
                _check_reply(action.reply)
            else:
                raise AssertionError(f"unknown action {action!r}")
        if session.state is State.CLOSED:
            break


def fuzz_body(fdp: atheris.FuzzedDataProvider) -> None:
    data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 3000))
    normalizer, stuffer = CrlfNormalizer(), DotStuffer()
    wire = stuffer.feed(normalizer.feed(data) + normalizer.finish()) + stuffer.finish()
    expected = CrlfNormalizer()
    expected_body = expected.feed(data) + expected.finish()
    reader, body = BodyReader(), b""
    for chunk in _chunks(fdp, wire + b"+OK next\r\n"):
        body += reader.feed(chunk)
    assert reader.finished
    assert body == expected_body, (body[:60], expected_body[:60])
    assert reader.leftover == b"+OK next\r\n"
    assert reader.unstuffed_dot_lines == 0


TARGETS = (fuzz_line_buffer, fuzz_parse_command, fuzz_session, fuzz_body)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    TARGETS[fdp.ConsumeIntInRange(0, len(TARGETS) - 1)](fdp)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
