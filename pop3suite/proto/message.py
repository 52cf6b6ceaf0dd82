"""An RFC 5322 message split into its header and body.

The split point is the first empty line; stored messages may end lines in
bare LF, so both ``CRLF CRLF`` and ``LF LF`` count, whichever comes first.
"""

from __future__ import annotations


def split_message(data: bytes) -> tuple[bytes, bytes]:
    """``(header, body)``: the header with its last line end, the body after
    the blank line.  A message without a blank line is all header."""
    if data.startswith(b"\r\n"):
        return b"", data[2:]
    if data.startswith(b"\n"):
        return b"", data[1:]
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return data[: crlf + 2], data[crlf + 4 :]
    if lf >= 0:
        return data[: lf + 1], data[lf + 2 :]
    return data, b""
