"""The mbox backend inside the real server and under real failures.

* ``pop3suite check --fast --storage mbox``: the conformance suite scores no
  FAILED on mbox, as on Maildir (about 45 s).
* A process killed with SIGKILL at many points of an UPDATE rewrite, and a
  rewrite / append that hits a real write error (RLIMIT_FSIZE: EFBIG from
  the kernel), lose nothing and duplicate nothing.
* A delivery the kernel kills half way (at a file-size limit) is cut off at
  the next login or rewrite and kept aside in ``mbox.torn.*``.
* A damaged mbox answers ``-ERR [SYS/TEMP]`` at login; the server goes on.
* Over the wire: LIST sizes = RETR octets; SMTP mail arriving during a POP3
  session survives that session's DELE + QUIT rewrite.
* ``server.storage`` / ``accounts.NAME.storage`` select the backend, bad
  values name the file and key, ``pop3suite init --storage mbox`` writes it.

The session-ending cases (RST, FIN, TLS close and truncation, abort in the
middle of a RETR), the lock and delivery during a session run on both
backends in tests/integration/test_no_data_loss.py.
"""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import pytest

from pop3suite.proto.framing import CrlfNormalizer
from pop3suite.server import config
from pop3suite.server.storage import MaildirStore, MboxStore, RoutingStore, open_store
from tests.conftest import PASSWORD, open_client, run_pop3suite

ROOT = Path(__file__).resolve().parents[2]


def wire(data: bytes) -> bytes:
    normalizer = CrlfNormalizer()
    return normalizer.feed(data) + normalizer.finish()


def contents(store: MboxStore, user: str = "alice") -> dict[str, bytes]:
    """UID -> wire bytes, in order, from a fresh login."""
    with store.open_maildrop(user) as drop:
        return {m.uid: b"".join(drop.read_chunks(n)) for n, m in enumerate(drop.messages, 1)}


def python(code: str, *args: str, **kwargs: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,  # type: ignore[arg-type]
    )


# --------------------------------------------------------- conformance


@pytest.mark.timeout(300)
def test_conformance_fast_run_on_mbox_has_no_failed() -> None:
    """The whole fast conformance run against an embedded server on mbox."""
    result = run_pop3suite("check", "--fast", "--storage", "mbox", timeout=280)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "FAILED: 0" in result.stdout
    assert "OK: " in result.stdout and "OK: 0 " not in result.stdout


def test_check_storage_needs_the_embedded_server() -> None:
    result = run_pop3suite("check", "--storage", "mbox", "pop3://a:b@127.0.0.1:1", timeout=60)
    assert result.returncode == 2 and "embedded" in result.stderr


# ----------------------------------------------------- crash during UPDATE


def _fork_rewriter(root: Path) -> tuple[int, int, int]:
    """Fork a session process: it opens alice's maildrop, writes ``r``,
    waits for a byte on the go pipe, removes every odd-numbered message
    (DELE + QUIT) and writes ``d``.  Returns (pid, its status pipe, go pipe)."""
    status_r, status_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest code runs here, only the backend
        code = 1
        try:
            os.close(status_r)
            os.close(go_w)
            drop = MboxStore(str(root), fsync=True).open_maildrop("alice")
            os.write(status_w, b"r")
            os.read(go_r, 1)
            drop.remove(range(1, len(drop.messages) + 1, 2))
            os.write(status_w, b"d")
            drop.close()
            code = 0
        finally:
            os._exit(code)
    os.close(status_w)
    os.close(go_r)
    return pid, status_r, go_w


def test_sigkill_during_rewrite_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Kill -9 a session process at a sweep of moments in its DELE+QUIT
    rewrite, with mail delivered during the session each time: afterwards
    the mbox holds the old or the new set, plus the late mail, exactly once."""
    store = MboxStore(str(tmp_path), fsync=False)
    store.ensure_mailbox("alice")
    sent: dict[str, bytes] = {}
    for i in range(500):
        data = b"Subject: m%d\r\n\r\n" % i + (b"text line %d\r\nFrom line\r\n" % i) * 200  # ~5 KB
        sent[store.deliver("alice", data)] = wire(data)
    current = list(sent)
    outcomes = {"old": 0, "new": 0, "killed mid-rewrite": 0}
    delays: list[float | None] = [n * 0.0003 for n in range(16)] + [0.01, 0.03, None]
    for delay in delays:
        pid, status, go = _fork_rewriter(tmp_path)
        try:
            assert os.read(status, 1) == b"r", "the session process failed to log in"
            late = b"Subject: late\r\n\r\nFrom a late delivery\r\n"
            late_uid = store.deliver("alice", late)
            sent[late_uid] = wire(late)
            os.write(go, b"g")
            if delay is None:
                assert os.read(status, 1) == b"d"
            else:
                time.sleep(delay)
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        finally:
            os.close(status)
            os.close(go)
        if list((tmp_path / "alice").glob(".mbox.rewrite.*")):
            outcomes["killed mid-rewrite"] += 1
        with store.open_maildrop("alice") as drop:  # also removes a stale temporary file
            after = {m.uid: m.size for m in drop.messages}
        kept = [uid for n, uid in enumerate(current, 1) if n % 2 == 0]
        if list(after) == [*current, late_uid]:
            outcomes["old"] += 1
        else:
            assert list(after) == [*kept, late_uid], f"delay {delay}: unexpected set of messages"
            outcomes["new"] += 1
        assert all(size == len(sent[uid]) for uid, size in after.items())
        assert not list((tmp_path / "alice").glob(".mbox.rewrite.*"))
        current = list(after)
    final = contents(store)
    assert list(final) == current and all(final[uid] == sent[uid] for uid in final)
    print("rewrite kill outcomes:", outcomes)
    assert outcomes["new"] >= 1  # at least the run without a kill rewrote


_FAILING_WRITER = """
    import resource, signal, sys
    from pop3suite.server.storage import StorageError
    from pop3suite.server.storage.mbox import MboxStore
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
    store = MboxStore(sys.argv[1], fsync=True)
    size = int(sys.argv[2])
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, hard))
    drop = store.open_maildrop("alice")
    try:
        drop.remove([1])
        print("removed")
    except StorageError as error:
        print("remove failed:", error)
    drop.close()
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, hard))
    try:
        store.deliver("alice", b"x" * 5000 + b"\\r\\n")
        print("delivered")
    except StorageError as error:
        print("deliver failed:", error)
"""


def test_write_errors_in_rewrite_and_append_leave_the_mbox_as_it_was(tmp_path: Path) -> None:
    """A real EFBIG from the kernel in the middle of the rewrite's temporary
    file, and in the middle of an append, changes nothing on disk."""
    store = MboxStore(str(tmp_path), fsync=False)
    store.ensure_mailbox("alice")
    for i in range(20):
        store.deliver("alice", b"Subject: %d\r\n\r\n" % i + b"y" * 1000 + b"\r\n")
    path = tmp_path / "alice" / "mbox"
    before = path.read_bytes()
    child = python(_FAILING_WRITER, str(tmp_path), str(len(before)))
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0].startswith("remove failed:") and "nothing removed" in lines[0], lines
    assert lines[1].startswith("deliver failed:"), lines
    assert path.read_bytes() == before
    assert not list((tmp_path / "alice").glob(".mbox.rewrite.*"))
    assert len(contents(store)) == 20


# ------------------------------------------------- a delivery that dies

_DYING_DELIVERY = """
    import resource, signal, sys
    from pop3suite.server.storage.mbox import MboxStore
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it by default
    store = MboxStore(sys.argv[1], fsync=True)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    # SIGXFSZ keeps its default action: the kernel kills the process at the
    # limit, half way through the append, like a crash or kill -9 would.
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), hard))
    sys.stdin.read(1)  # the parent says when (a session may be open)
    store.deliver("alice", b"Subject: big\\r\\n\\r\\n" + b"z" * 200000 + b"\\r\\n")
    print("delivered")
"""


def _die_mid_append(root: Path) -> bytes:
    """Run a delivery that the kernel kills half way; returns the bytes it
    left after the end of the mbox (the torn record)."""
    path = root / "alice" / "mbox"
    size = path.stat().st_size
    child = python(_DYING_DELIVERY, str(root), str(size + 100_000))
    out, err = child.communicate(b"g", timeout=60)
    assert child.returncode == -signal.SIGXFSZ, (child.returncode, out, err)
    torn = path.read_bytes()[size:]
    assert 0 < len(torn) <= 100_000 and torn.startswith(b"From "), len(torn)
    return torn


def test_a_delivery_killed_half_way_is_cut_off_and_kept_aside(tmp_path: Path) -> None:
    """A delivery process that dies mid-append (killed by the kernel at a
    file-size limit) leaves a torn record; the next login moves it to
    ``mbox.torn.*`` and goes on with every whole message, and the next
    delivery works."""
    store = MboxStore(str(tmp_path), fsync=False)
    store.ensure_mailbox("alice")
    sent = {store.deliver("alice", b"Subject: %d\r\n\r\nbody\r\n" % i): i for i in range(5)}
    torn = _die_mid_append(tmp_path)
    assert list(contents(store)) == list(sent)  # the login repaired the mailbox
    kept = list((tmp_path / "alice").glob("mbox.torn.*"))
    assert len(kept) == 1 and kept[0].read_bytes() == torn
    late = store.deliver("alice", b"Subject: late\r\n\r\nafter the crash\r\n")
    assert list(contents(store)) == [*sent, late]
    assert (tmp_path / "alice" / ".mbox.append").read_bytes() == b""


def test_a_delivery_killed_during_a_session_is_cut_before_its_rewrite(tmp_path: Path) -> None:
    """The delivery dies while a POP3 session is open; that session's
    DELE+QUIT rewrite cuts the torn tail instead of copying it."""
    store = MboxStore(str(tmp_path), fsync=False)
    store.ensure_mailbox("alice")
    uids = [store.deliver("alice", b"Subject: %d\r\n\r\nbody\r\n" % i) for i in range(4)]
    with store.open_maildrop("alice") as drop:
        torn = _die_mid_append(tmp_path)
        drop.remove([1])
    assert list(contents(store)) == uids[1:]
    assert [p.read_bytes() for p in (tmp_path / "alice").glob("mbox.torn.*")] == [torn]


def test_a_delivery_that_died_after_writing_keeps_its_message(tmp_path: Path) -> None:
    """The process died after the whole record was written but before it
    cleared its note (or a crash undid the clearing): the message stays."""
    store = MboxStore(str(tmp_path), fsync=False)
    store.ensure_mailbox("alice")
    first = store.deliver("alice", b"Subject: 1\r\n\r\none\r\n")
    size = (tmp_path / "alice" / "mbox").stat().st_size
    second = store.deliver("alice", b"Subject: 2\r\n\r\ntwo\r\n")
    (tmp_path / "alice" / ".mbox.append").write_bytes(b"%d\n" % size)
    assert list(contents(store)) == [first, second]
    assert not list((tmp_path / "alice").glob("mbox.torn.*"))


# ------------------------------------------------------- inside the server


def test_damaged_mbox_gives_sys_temp_and_the_server_goes_on(server_factory, tls_context, lab) -> None:
    running = server_factory(storage="mbox")
    store = open_store(running.settings, fsync=False)
    assert isinstance(store, MboxStore)
    (Path(lab.settings.mail_root) / "alice" / "mbox").write_bytes(b"Subject: no From line\n\nx\n\n")
    store.deliver("bob", b"Subject: fine\r\n\r\nok\r\n")
    pop = open_client(running, "plain", tls_context)
    pop.user("alice")
    response = pop.pass_(PASSWORD, check=False)
    assert not response.ok and response.code == ("SYS", "TEMP"), response.raw
    pop.close()
    other = open_client(running, "plain", tls_context)
    other.login("bob", PASSWORD)
    assert other.retr(1) == b"Subject: fine\r\n\r\nok\r\n"
    assert other.command("QUIT").ok
    other.close()


def test_list_sizes_equal_retr_octets_over_the_wire(server_factory, tls_context) -> None:
    running = server_factory(storage="mbox")
    store = open_store(running.settings, fsync=False)
    bodies = [b"From me\n>From you\n.dot\r\nbare\rcr", b"", b"X-UIDL: not mine\r\n\r\nbody"]
    for body in bodies:
        store.deliver("alice", body)
    pop = open_client(running, "plain", tls_context)
    pop.login("alice", PASSWORD)
    sizes = pop.list()
    for number, body in enumerate(bodies, 1):
        data = pop.retr(number)
        assert data == wire(body)
        assert sizes[number] == len(data)
    assert pop.stat() == (3, sum(sizes.values()))
    assert pop.command("QUIT").ok
    pop.close()


# ---------------------------------------------------------------- config


def _config(tmp_path: Path, server: str, bob: str = "") -> Path:
    path = tmp_path / "pop3suite.toml"
    path.write_text(
        f'[server]\npop3_port = "auto"\n{server}\n'
        f'[accounts.alice]\npassword = "{{PLAIN}}x"\n\n[accounts.bob]\npassword = "{{PLAIN}}x"\n{bob}\n',
        encoding="utf-8",
    )
    return path


def test_storage_keys_select_backends_per_account(tmp_path: Path) -> None:
    settings = config.load(_config(tmp_path, "", 'storage = "mbox"'))
    assert settings.storage == "maildir" and settings.accounts["bob"].storage == "mbox"
    store = open_store(settings, fsync=False)
    assert isinstance(store, RoutingStore)
    assert isinstance(store.backend("alice"), MaildirStore) and isinstance(store.backend("bob"), MboxStore)
    for user in ("alice", "bob"):
        store.ensure_mailbox(user)
        store.deliver(user, b"hello\r\n")
        with store.open_maildrop(user) as drop:
            assert [b"".join(drop.read_chunks(1))] == [b"hello\r\n"]
    assert (settings.mail_root / "bob" / "mbox").stat().st_size > 0
    assert not (settings.mail_root / "alice" / "mbox").exists()
    assert isinstance(open_store(config.load(_config(tmp_path, 'storage = "mbox"'))), MboxStore)


@pytest.mark.parametrize(
    ("server", "bob", "key"),
    [('storage = "mbx"', "", "server.storage"), ("", 'storage = "Maildir"', "accounts.bob.storage")],
)
def test_bad_storage_value_names_file_and_key(tmp_path: Path, server: str, bob: str, key: str) -> None:
    path = _config(tmp_path, server, bob)
    with pytest.raises(config.ConfigError, match=rf"{path}: key '{key}': unknown storage .*maildir, mbox"):
        config.load(path)


def test_init_storage_mbox_writes_the_key(tmp_path: Path) -> None:
    result = run_pop3suite("init", str(tmp_path / "lab"), "--storage", "mbox", timeout=60)
    assert result.returncode == 0, result.stderr
    document = tomllib.loads((tmp_path / "lab" / "pop3suite.toml").read_text())
    assert document["server"]["storage"] == "mbox"
    assert (tmp_path / "lab" / "mail" / "alice" / "mbox").is_file()


def test_smtp_delivery_during_a_pop_session_survives_its_rewrite(server_factory, tls_context) -> None:
    """Mail arriving over SMTP while a user is logged in is appended (the
    write lock is not the session lock), is not in the session's numbering,
    and survives that session's DELE + QUIT rewrite."""
    running = server_factory(storage="mbox", smtp_port=1)
    store = open_store(running.settings, fsync=False)
    for i in range(3):
        store.deliver("alice", b"Subject: old %d\r\n\r\nold\r\n" % i)
    pop = open_client(running, "plain", tls_context)
    pop.login("alice", PASSWORD)
    with smtplib.SMTP("127.0.0.1", running.port("smtp"), timeout=10) as smtp:
        smtp.sendmail("someone@example.net", ["alice@example.test"], b"Subject: new\r\n\r\nFrom smtp\r\n")
    assert pop.stat()[0] == 3
    for number in (1, 2, 3):
        pop.dele(number)
    assert pop.command("QUIT").ok
    pop.close()
    again = open_client(running, "plain", tls_context)
    again.login("alice", PASSWORD)
    assert again.stat()[0] == 1
    message = again.retr(1)
    assert b"Subject: new\r\n" in message and message.endswith(b"\r\nFrom smtp\r\n")
    assert again.command("QUIT").ok
    again.close()
