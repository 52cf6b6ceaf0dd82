"""The benchmark mail: the same bytes go to every server under test."""

from __future__ import annotations

from pop3suite.proto import crlf_form as expected_wire


def text_message(size: int, seed: int = 0) -> bytes:
    """A CRLF message of about ``size`` octets: many short lines of varying
    length, and every 25th line starting with a dot (so RETR has to stuff)."""
    header = (
        b"From: bench@example.test\r\nTo: reader@example.test\r\n"
        b"Subject: benchmark message %d\r\nMessage-ID: <%d.bench@example.test>\r\n\r\n" % (seed, seed)
    )
    words = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
    lines = []
    for i in range(200):
        line = b" ".join(words[: 1 + (i * 7 + seed) % len(words)])
        if i % 25 == 0:
            line = b"." + line
        elif i % 50 == 13:
            line = b"."  # a line that is a lone dot
        lines.append(line)
    block = b"\r\n".join(lines) + b"\r\n"
    body = block * (max(0, size - len(header)) // len(block) + 1)
    cut = body.rfind(b"\r\n", 0, max(2, size - len(header))) + 2
    return header + body[:cut]


def small_message(i: int) -> bytes:
    """A few-line CRLF message, different for every ``i``."""
    return (
        b"From: sender%d@example.test\r\nTo: bulk@example.test\r\nSubject: small %d\r\n\r\n"
        b"Hello number %d.\r\n.dot line\r\nBye.\r\n" % (i % 97, i, i)
    )


def wire(data: bytes) -> bytes:
    """What RETR must deliver for ``data`` (CRLF, unstuffed)."""
    return expected_wire(data)
