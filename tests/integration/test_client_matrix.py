"""The client interop matrix (``pop3suite clients``) against the embedded
reference server: real client programs fetch the fixture set in every mode,
login and keep/delete behaviour they support, byte for byte.

curl, fetchmail and poplib run every cell; mpop, getmail and mutt run a
slice (plain and implicit TLS, USER/PASS) to keep the default run short;
``pop3suite clients`` runs them all.  The checker itself must be able to
fail: a message corrupted on the server's disk, and a client that does not
delete, are both caught.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pop3suite.cli import main
from pop3suite.interop import CLIENTS
from pop3suite.interop.base import Login
from pop3suite.interop.pythonpoplib import PythonPoplib
from pop3suite.interop.runner import Cell, Runner, seeder_for
from pop3suite.interop.targets import embedded
from pop3suite.target.model import Credentials, Target

pytestmark = pytest.mark.realclient


@pytest.fixture(scope="module")
def reference() -> Iterator[Target]:
    with embedded() as target:
        yield target


def _runner(names: list[str], **kwargs) -> Runner:
    clients = [CLIENTS[name]() for name in names]
    for client in clients:
        reason = client.available()
        if reason:
            pytest.skip(reason)
    return Runner(clients, progress=lambda line: None, **kwargs)


def _failures(cells: list[Cell]) -> str:
    return "\n".join(
        f"{c.client} {c.mode} {c.auth} {c.behaviour}: {c.status}: {c.note}\n{c.error}"
        for c in cells
        if c.status != "pass"
    )


@pytest.mark.parametrize("name", ["curl", "fetchmail", "poplib"])
@pytest.mark.parametrize("mode", ["plain", "stls", "implicit"])
def test_client_retrieves_fixtures_byte_exact(name, mode, reference):
    """Every login the client supports, keep and delete, in this mode: each
    fixture (bare LF, dot lines, 1 MB, 8-bit, no final newline) arrives byte
    for byte, kept mail stays and deleted mail is gone (RFC 1939 §5-§7)."""
    client = CLIENTS[name]()
    auths = tuple(a for a in ("user", "apop", "sasl") if a in client.auths)
    if name == "curl":
        auths = tuple(a for a in auths if a != "user")  # curl cannot be kept from SASL
    if (name, mode) == ("fetchmail", "stls"):
        auths = ("user",)  # APOP skips STLS: test_fetchmail_apop_stls_downgrade_is_caught
    run = _runner([name], modes=(mode,), auths=auths).run(reference)
    assert len(run.cells) == 2 * len(auths)
    assert all(cell.status == "pass" for cell in run.cells), _failures(run.cells)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mpop", "getmail", "mutt"])
def test_more_clients_plain_and_implicit(name, reference):
    """mpop, getmail6 and mutt over plain POP3 and implicit TLS with
    USER/PASS, keep and delete."""
    run = _runner([name], modes=("plain", "implicit"), auths=("user",)).run(reference)
    assert [cell.status for cell in run.cells] == ["pass"] * 4, _failures(run.cells)


def test_curl_user_login_is_reported_unsupported_not_passed(reference):
    """curl picks SASL when the server offers it: the USER/PASS cell must say
    so instead of passing on a login it did not test."""
    run = _runner(["curl"], modes=("plain",), auths=("user",), behaviours=("keep",)).run(reference)
    [cell] = run.cells
    assert cell.status == "unsupported"
    assert "chose AUTH" in cell.note


def test_unsupported_modes_are_never_run(reference):
    """getmail has no STLS and poplib no SASL: unsupported, with the reason."""
    getmail = _runner(["getmail"])  # skips if getmail6 is missing
    cell = getmail.run_cell(reference, CLIENTS["getmail"](), "stls", "user", "keep")
    assert (cell.status, cell.note) == ("unsupported", "getmail6 has no STLS for POP3 (only implicit TLS)")
    cell = getmail.run_cell(reference, PythonPoplib(), "plain", "sasl", "keep")
    assert cell.status == "unsupported" and "SASL" in cell.note


def test_fetchmail_apop_stls_downgrade_is_caught(reference):
    """fetchmail with proto APOP ignores sslproto and logs in in cleartext:
    the STLS cell fails on the trace instead of passing over plain text."""
    run = _runner(["fetchmail"], modes=("stls",), auths=("apop",), behaviours=("keep",)).run(reference)
    [cell] = run.cells
    assert cell.status == "fail"
    assert "did not use STLS" in cell.note
    assert "POP3> APOP carol" in cell.error


def _corrupt_dot_lines(target: Target, credentials: Credentials) -> None:
    """Flip one byte of a stored fixture, as a broken server's storage would."""
    maildir = Path(target.seed.split(":", 1)[1]).parent / credentials.user
    for path in (maildir / "new").iterdir():
        data = path.read_bytes()
        if b"X-Pop3suite-Fixture: dot-lines" in data:
            path.write_bytes(data.replace(b"..\r\n", b".,\r\n", 1))
            return
    raise AssertionError("dot-lines fixture not found in the maildir")


@pytest.mark.parametrize(("name", "auth"), [("curl", "sasl"), ("fetchmail", "user"), ("poplib", "user")])
def test_corrupted_message_fails_the_cell(name, auth, reference):
    """A message the server hands out altered fails the byte-exact check,
    naming the fixture and the first differing bytes."""
    runner = _runner([name], modes=("plain",), auths=(auth,), behaviours=("keep",))
    runner.after_deliver = _corrupt_dot_lines
    [cell] = runner.run(reference).cells
    assert cell.status == "fail"
    assert cell.note.startswith("dot-lines: differs at byte")


def _deliver_a_notice(target: Target, credentials: Credentials) -> None:
    """A message that is no fixture, as a server's own delivery notice would be."""
    seeder_for(target, credentials).deliver(b"From: MAILER-DAEMON\r\nSubject: a notice\r\n\r\nhi\r\n")


@pytest.mark.parametrize("name", ["poplib", "fetchmail"])
def test_extra_message_in_the_maildrop_is_retrieved_and_listed(name, reference):
    """Messages the server served besides the fixtures are compared like the
    rest (the client stored what the server served), listed in the note, and
    counted in the keep check; the fixtures themselves are still exact."""
    runner = _runner([name], modes=("plain",), auths=("user",), behaviours=("keep",))
    runner.after_deliver = _deliver_a_notice
    [cell] = runner.run(reference).cells
    assert cell.status == "pass", _failures([cell])
    assert "in the maildrop is no fixture" in cell.note and "Subject: a notice" in cell.note


class _NeverDeletes(PythonPoplib):
    """poplib told to delete but quitting without DELE: the runner's own
    maildrop check must notice."""

    name = "poplib-never-deletes"

    def retrieve(self, target: Login, mode: str, auth: str, behaviour: str, workdir: Path) -> list[bytes]:
        return super().retrieve(target, mode, auth, "keep", workdir)


def test_client_that_does_not_delete_fails_delete_cell(reference):
    runner = Runner([_NeverDeletes()], progress=lambda line: None)
    cell = runner.run_cell(reference, _NeverDeletes(), "plain", "user", "delete")
    assert cell.status == "fail"
    assert "delete: the maildrop holds 6 messages afterwards, expected 0" in cell.note


def test_cli_writes_the_matrix(tmp_path, capsys):
    """``pop3suite clients`` runs, prints one line per cell and writes the
    three report files; unknown client names are a usage error."""
    report = tmp_path / "report"
    code = main(
        [
            "clients",
            "--clients",
            "poplib",
            "--modes",
            "plain",
            "--auths",
            "user,sasl",
            "--report",
            str(report),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "[1/4] reference poplib plain user keep: pass" in out
    data = json.loads((report / "clients.json").read_text())
    assert [cell["status"] for cell in data["cells"]] == ["pass", "pass", "unsupported", "unsupported"]
    assert "| poplib | plain | user | pass | pass |" in (report / "clients.md").read_text()
    assert (report / "clients.html").read_text().startswith("<!doctype html>")
    assert main(["clients", "--clients", "outlook"]) == 2
    assert "unknown outlook" in capsys.readouterr().err
