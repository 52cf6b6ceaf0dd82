"""The one POP3 parser of each kind in pop3suite.proto: listings, CAPA,
APOP, SASL PLAIN, the header/body split and the RETR/TOP body encoder."""

from __future__ import annotations

import base64
import hashlib

import pytest

from pop3suite.proto import (
    BodyEncoder,
    BodyReader,
    MalformedResponse,
    apop_digest,
    capability_map,
    encode_body,
    greeting_timestamp,
    parse_drop_listing,
    parse_scan_line,
    parse_scan_listing,
    parse_uid_line,
    parse_uid_listing,
    sasl_plain_decode,
    sasl_plain_encode,
    split_message,
)


def test_drop_listing_allows_trailing_text_and_rejects_garbage():
    assert parse_drop_listing("2 320") == (2, 320)
    assert parse_drop_listing(b"0 0 maildrop empty\r\n") == (0, 0)
    for bad in ("2", "two 320", "2  320", "-1 5", ""):
        with pytest.raises(MalformedResponse):
            parse_drop_listing(bad)


def test_scan_and_uid_lines():
    assert parse_scan_line(b"1 120\r\n") == (1, 120)
    assert parse_scan_listing([b"1 120", b"2 200"]) == {1: 120, 2: 200}
    assert parse_uid_line("3 QhdPYR:00WBw1Ph7x7") == (3, "QhdPYR:00WBw1Ph7x7")
    assert parse_uid_listing([b"1 a", b"2 b"]) == {1: "a", 2: "b"}
    for bad in (b"0 120", b"1", b"x 1"):
        with pytest.raises(MalformedResponse):
            parse_scan_line(bad)
    for bad in (b"1 " + b"u" * 71, b"1 has\x7f", b"1 two words", b"0 uid"):
        with pytest.raises(MalformedResponse):
            parse_uid_line(bad)


def test_capability_map_upper_cases_tags_and_splits_arguments():
    tags = capability_map([b"TOP", "sasl PLAIN LOGIN", "IMPLEMENTATION x y", "", "TOP again"])
    assert tags == {"TOP": [], "SASL": ["PLAIN", "LOGIN"], "IMPLEMENTATION": ["x", "y"]}


def test_apop_digest_is_the_rfc_1939_example():
    # RFC 1939 §7: the example's digest.
    stamp = greeting_timestamp("POP3 server ready <1896.697170952@dbc.mtview.ca.us>")
    assert stamp == "<1896.697170952@dbc.mtview.ca.us>"
    assert apop_digest(stamp, "tanstaaf") == "c4c9334bac560ecc979e58001b3e22fb"
    assert greeting_timestamp("ready <no-at-sign>") is None
    assert greeting_timestamp("ready") is None


def test_sasl_plain_round_trip_and_errors():
    token = sasl_plain_encode("alice", "s3cret pass", authzid="admin")
    assert base64.b64decode(token) == b"admin\0alice\0s3cret pass"
    assert sasl_plain_decode(token) == ("admin", "alice", b"s3cret pass")
    assert sasl_plain_decode(sasl_plain_encode("b\u00e9a", "p")) == ("", "b\u00e9a", b"p")
    for bad in (
        b"%%%",
        base64.b64encode(b"\0alice"),
        base64.b64encode(b"\0\0pw"),
        base64.b64encode(b"\0\xff\0pw"),
    ):
        with pytest.raises(MalformedResponse):
            sasl_plain_decode(bad)


def test_split_message():
    assert split_message(b"A: 1\r\nB: 2\r\n\r\nbody\r\n") == (b"A: 1\r\nB: 2\r\n", b"body\r\n")
    assert split_message(b"A: 1\n\nbody\n") == (b"A: 1\n", b"body\n")
    assert split_message(b"A: 1\r\n") == (b"A: 1\r\n", b"")
    assert split_message(b"\r\nbody\r\n\r\nmore") == (b"", b"body\r\n\r\nmore")


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 4096])
@pytest.mark.parametrize("top_lines", [None, 0, 1, 2, 50])
@pytest.mark.parametrize("crlf_clean", [False, True])
def test_body_encoder_matches_an_independent_oracle(size, top_lines, crlf_clean):
    stored = b"Subject: x\r\nX: .y\r\n\r\n.first\r\nsecond\r\n..third\r\n.\r\nlast"
    if not crlf_clean:
        stored = stored.replace(b"second\r\n", b"second\n")
    wire = stored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"
    if top_lines is not None:
        head, _, body = wire.partition(b"\r\n\r\n")
        wire = head + b"\r\n\r\n" + b"".join(line + b"\r\n" for line in body.split(b"\r\n")[:-1][:top_lines])
    chunks = [stored[i : i + size] for i in range(0, len(stored), size)]
    encoded = b"".join(encode_body(chunks, top_lines, crlf_clean))
    assert encoded.endswith(b"\r\n.\r\n")
    reader = BodyReader()
    assert reader.feed(encoded) == wire and reader.finished and reader.leftover == b""
    assert reader.unstuffed_dot_lines == 0


def test_body_encoder_stops_reading_once_top_is_served():
    encoder = BodyEncoder(top_lines=1)
    assert encoder.feed(b"H: v\r\n\r\none\r\ntwo\r\n") == b"H: v\r\n\r\none\r\n"
    assert encoder.done
    assert encoder.feed(b"three\r\n") == b""
    assert encoder.finish() == b".\r\n"


def test_apop_digest_is_md5_hex():
    assert apop_digest("<a@b>", "s") == hashlib.md5(b"<a@b>s").hexdigest()
