"""Locust users: a POP3 mail client that polls, and an SMTP delivery user.

Imports Locust (so gevent patches sockets): load this only in a Locust
process.  The POP3 user is thin (STYLE.md principle 9): each protocol step
is one call on the shared blocking :class:`~pop3suite.client.Pop3Client`
(plain sockets, so gevent makes it cooperative), timed with
``perf_counter`` and reported as one Locust ``request`` event; RETR bodies
stream through :class:`~pop3suite.load.accounting.RetrSink` in 256 KiB chunks.

Request names: CONNECT (TCP connect + greeting; for implicit TLS the TCP
connect only), TLS (STLS + handshake, or the implicit handshake + greeting),
AUTH, STAT, UIDL, LIST, RETR[<size class>], DELE, QUIT, SESSION (the whole
poll) and SESSION(CO), timed from the poll's *scheduled* start: if the
server is slow and polls start late, SESSION(CO) shows the delay a real
client would have seen (coordinated-omission correction, as in wrk2).

The run's settings live in :data:`CONTEXT`, filled by pop3suite/load/locustfile.py.
"""

from __future__ import annotations

import itertools
import random
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from locust import User, constant_pacing, task
from locust.runners import WorkerRunner

from pop3suite.client import ConnectionClosed, ErrResponse, Pop3Client, trust_context
from pop3suite.proto.errors import MalformedResponse

from .accounting import Ledger, RetrSink, digest, make_message
from .metrics import Recorder
from .scenario import ClientClass, Scenario, size_class

# ------------------------------------------------------------------ failures


class Pop3Failure(Exception):
    """A step failed; the subclass names why (Locust groups failures by it)."""


class Pop3InUse(Pop3Failure):
    """``-ERR [IN-USE]``: the maildrop is locked by another session."""


class Pop3LoginDelay(Pop3Failure):
    """``-ERR [LOGIN-DELAY]``: polled faster than the server allows."""


class Pop3SysTemp(Pop3Failure):
    """``-ERR [SYS/TEMP]``: a temporary server-side failure."""


class Pop3AuthFailed(Pop3Failure):
    """``-ERR [AUTH]`` or a plain ``-ERR`` to a login command."""


class Pop3ErrResponse(Pop3Failure):
    """Any other ``-ERR``."""


class Pop3Timeout(Pop3Failure):
    """No (complete) answer within the client's timeout."""


class Pop3ConnectionError(Pop3Failure):
    """Refused, reset or closed connection."""


class Pop3TlsError(Pop3Failure):
    """TLS handshake or certificate failure."""


class Pop3ProtocolError(Pop3Failure):
    """The server's answer was not POP3."""


class SmtpFailure(Exception):
    """The SMTP delivery failed."""


_CODES = {"IN-USE": Pop3InUse, "LOGIN-DELAY": Pop3LoginDelay, "SYS/TEMP": Pop3SysTemp, "AUTH": Pop3AuthFailed}


def classify(error: BaseException, step: str) -> Pop3Failure:
    """Translate a foreign exception once, at the edge (STYLE.md 3)."""
    if isinstance(error, Pop3Failure):
        return error
    if isinstance(error, ErrResponse):
        code = error.response.code_str
        kind = _CODES.get(code or "", Pop3AuthFailed if step == "AUTH" else Pop3ErrResponse)
        return kind(f"{step}: -ERR [{code}]" if code else f"{step}: -ERR")
    if isinstance(error, socket.timeout | TimeoutError):
        return Pop3Timeout(f"{step}: timeout")
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return Pop3TlsError(f"{step}: {type(error).__name__}")
    if isinstance(error, ConnectionClosed | OSError):
        return Pop3ConnectionError(f"{step}: {type(error).__name__}")
    if isinstance(error, MalformedResponse | ValueError):
        return Pop3ProtocolError(f"{step}: malformed answer")
    return Pop3Failure(f"{step}: {type(error).__name__}")


# ------------------------------------------------------------------ run context


@dataclass
class RunContext:
    """What every user of this process needs; set by the locustfile."""

    scenario: Scenario | None = None
    run: dict[str, Any] = field(default_factory=dict)
    ledger: Ledger = field(default_factory=Ledger)
    recorder: Recorder = field(default_factory=Recorder)
    ssl_context: ssl.SSLContext | None = None

    @property
    def host(self) -> str:
        return self.run.get("host", "127.0.0.1")

    def tls_context(self) -> ssl.SSLContext:
        if self.ssl_context is None:
            self.ssl_context = trust_context(self.run.get("cafile"), bool(self.run.get("insecure")))
            if self.run.get("tls_ciphers"):  # an era profile's suite (pop3suite/load/capacity/era.py)
                self.ssl_context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
                self.ssl_context.set_ciphers(self.run["tls_ciphers"])
        return self.ssl_context


CONTEXT = RunContext()


def account_index(local: int, worker_index: int, workers: int) -> int:
    """Users of one class are numbered per process; with ``workers`` worker
    processes, worker ``w``'s k-th user takes account ``k * workers + w``, so
    no two users share a maildrop (the lock is exclusive)."""
    return local * max(1, workers) + max(0, worker_index)


def _worker_index(user: User) -> int:
    runner = user.environment.runner
    return runner.worker_index if isinstance(runner, WorkerRunner) else 0


# ------------------------------------------------------------------ POP3 user


class Pop3User(User):
    """One simulated mail client polling one account.  Subclasses set
    ``client`` (a :class:`ClientClass`) and ``wait_time``; see
    :func:`make_pop3_class`."""

    abstract = True
    client: ClientClass
    _counter: itertools.count

    def on_start(self) -> None:
        ctx = CONTEXT
        workers = int(ctx.run.get("workers", 1))
        self.account = self.client.account(account_index(next(self._counter), _worker_index(self), workers))
        self.password = ctx.run.get("password", "")
        self.interval = ctx.scenario.real_interval(self.client) if ctx.scenario else 60.0
        self.seen: set[str] = set()
        self.polls = 0
        # Random initial phase so polls do not arrive in bursts.  It is the
        # first wait (not a sleep in on_start), so a stopping run ends it at once.
        self._phase: float | None = random.uniform(0, self.interval)
        self.scheduled = time.perf_counter() + self._phase

    _pacing: Callable[[User], float]

    def wait_time(self) -> float:
        if self._phase is not None:
            phase, self._phase = self._phase, None
            # Tell constant_pacing's bookkeeping that this wait happened, so
            # its next wait is interval - session time, on the same grid.
            self._cp_last_run, self._cp_last_wait_time = time.perf_counter(), phase
            return phase
        return self._pacing()

    def _fire(self, name: str, started: float, octets: int, exception: BaseException | None) -> None:
        self.environment.events.request.fire(
            request_type=f"POP3:{self.client.name}",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=octets,
            exception=exception,
            context={"account": self.account, "cell": self.client.name},
        )

    def step(self, name: str, call: Callable[[], Any], octets: Callable[[Any], int] | None = None) -> Any:
        """Run one protocol step as one request event; failures raise a
        :class:`Pop3Failure`."""
        started = time.perf_counter()
        try:
            result = call()
        except Exception as error:
            failure = classify(error, name.split("[", 1)[0])
            self._fire(name, started, 0, failure)
            raise failure from None
        self._fire(name, started, octets(result) if octets else 0, None)
        return result

    # -- the steps

    def _connect(self) -> Pop3Client:
        ctx = CONTEXT
        mode = self.client.tls
        port = ctx.run["pop3s_port"] if mode == "implicit" else ctx.run["pop3_port"]
        pop = Pop3Client(
            ctx.host,
            port,
            tls="none",
            ssl_context=ctx.tls_context(),
            timeout=self.client.timeout,
            transcript=False,
        )

        def tcp() -> None:
            pop.open_tcp()
            if mode != "implicit":
                pop.read_greeting()

        self.step("CONNECT", tcp)
        if mode == "implicit":

            def handshake() -> None:
                pop.start_implicit_tls()
                pop.read_greeting()

            self.step("TLS", handshake)
        elif mode == "stls":
            self.step("TLS", pop.stls)
        return pop

    def _auth(self, pop: Pop3Client) -> None:
        how = self.client.auth
        if how == "apop":
            self.step("AUTH", lambda: pop.apop(self.account, self.password))
        elif how == "sasl":
            self.step("AUTH", lambda: pop.auth_plain(self.account, self.password))
        else:
            self.step("AUTH", lambda: pop.login(self.account, self.password))

    def _retr(self, pop: Pop3Client, number: int, size: int, session: str) -> str | None:
        sink = RetrSink()
        self.step(f"RETR[{size_class(size)}]", lambda: pop.retr(number, sink=sink), lambda _: sink.octets)
        nonce = sink.nonce
        CONTEXT.ledger.retrieved(nonce, self.account, sink.hexdigest(), session, self.client.behaviour)
        return nonce

    @task
    def poll(self) -> None:
        if self._phase is not None:
            return  # the initial phase wait comes first
        scheduled, self.scheduled = self.scheduled, self.scheduled + self.interval
        started = time.perf_counter()
        CONTEXT.recorder.record("~late_start", max(0.0, started - scheduled) * 1000, 0, None)
        session = uuid.uuid4().hex
        failure: BaseException | None = None
        octets = 0
        pop: Pop3Client | None = None
        try:
            pop = self._connect()
            self._auth(pop)
            count, _ = self.step("STAT", pop.stat)
            if self.client.behaviour == "keep":
                octets = self._keep(pop, session)
            elif count:
                octets = self._delete(pop, session)
            self.step("QUIT", lambda: pop.command("QUIT"))
            if self.client.behaviour == "delete" and count:
                CONTEXT.ledger.committed(session)
        except Pop3Failure as error:
            failure = error
        finally:
            if pop is not None:
                pop.close()
            self.polls += 1
        self._fire("SESSION", started, octets, failure)
        self._fire("SESSION(CO)", scheduled, octets, failure)

    def _limit(self, numbers: list[int]) -> list[int]:
        top = self.client.max_retr_per_poll
        return numbers[:top] if top else numbers

    def _delete(self, pop: Pop3Client, session: str) -> int:
        sizes = self.step("LIST", pop.list)
        octets = 0
        for number in self._limit(sorted(sizes)):
            self._retr(pop, number, sizes[number], session)
            octets += sizes[number]
            self.step("DELE", lambda n=number: pop.dele(n))
        return octets

    def _keep(self, pop: Pop3Client, session: str) -> int:
        uids = self.step("UIDL", pop.uidl)
        if self.polls == 0 and self.client.initial_sync:
            self.seen.update(uids.values())  # a client that has seen the mailbox before
            return 0
        new = self._limit([n for n in sorted(uids) if uids[n] not in self.seen])
        if not new:
            return 0
        sizes = self.step("LIST", pop.list)
        octets = 0
        for number in new:
            self._retr(pop, number, sizes.get(number, 0), session)
            self.seen.add(uids[number])
            octets += sizes.get(number, 0)
        return octets


def make_pop3_class(client: ClientClass, interval: float) -> type[Pop3User]:
    """A Locust user class for one cell of the client mix; ``fixed_count``
    users, so each gets its own account."""
    return type(
        f"Pop3_{client.name}",
        (Pop3User,),
        {
            "abstract": False,
            "client": client,
            "fixed_count": client.users,
            "_pacing": constant_pacing(interval),
            "_counter": itertools.count(),
        },
    )


# ------------------------------------------------------------------ SMTP user


class SmtpDeliveryUser(User):
    """Delivers one message per SMTP session (SPECmail2001 §4.2.2) at
    exponential inter-arrival times, so all delivery users together offer
    ``delivery.rate`` messages per (compressed) second."""

    abstract = True
    rate_per_user: float = 1.0
    recipients: tuple[str, ...] = ()

    def on_start(self) -> None:
        self._started = False

    def wait_time(self) -> float:
        return random.expovariate(self.rate_per_user)

    @task
    def deliver(self) -> None:
        if not self._started:
            self._started = True  # start with a random (exponential) wait
            return
        ctx = CONTEXT
        assert ctx.scenario is not None
        account = random.choice(self.recipients)
        size = ctx.scenario.delivery.sizes.sample(random)  # type: ignore[arg-type]
        nonce = uuid.uuid4().hex
        data = make_message(nonce, size, account)
        ctx.ledger.pending(nonce, account)
        started = time.perf_counter()
        exception: BaseException | None = None
        try:
            with smtplib.SMTP(ctx.host, ctx.run["smtp_port"], timeout=60) as smtp:
                domain = ctx.run.get("rcpt_domain") or "example.test"
                smtp.sendmail(f"load@{domain}", [f"{account}@{domain}"], data)
        except (smtplib.SMTPException, OSError) as error:
            exception = SmtpFailure(type(error).__name__)
        else:
            ctx.ledger.delivered(nonce, account, digest(data))
        self.environment.events.request.fire(
            request_type="SMTP",
            name=f"DELIVER[{size_class(len(data))}]",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=len(data),
            exception=exception,
            context={"account": account},
        )


def make_smtp_class(scenario: Scenario, workers: int = 1) -> type[SmtpDeliveryUser] | None:
    delivery = scenario.delivery
    if delivery.rate <= 0 or delivery.users <= 0:
        return None
    targets = [c for c in scenario.clients if not delivery.to or c.name in delivery.to]
    recipients = tuple(a for a, c in scenario.accounts(workers).items() if c in targets)
    if not recipients:
        return None
    return type(
        "SmtpDelivery",
        (SmtpDeliveryUser,),
        {
            "abstract": False,
            "fixed_count": delivery.users,
            "rate_per_user": scenario.real_delivery_rate() / delivery.users,
            "recipients": recipients,
        },
    )
