"""RFC 3206 "The SYS and AUTH POP Response Codes": ``[AUTH]`` on credential
failures (always when AUTH-RESP-CODE is advertised), ``[SYS/TEMP]`` and
``[SYS/PERM]`` on system failures."""

from __future__ import annotations

import secrets
from pathlib import Path

from conformance.case import INFO, MAY, MUST, case, expect, unimplemented
from conformance.conftest import login_error
from pop3suite.client import apop_timestamp
from pop3suite.proto import Response


def _login_mode(target, capabilities: dict[str, str]) -> str:
    """Where credentials can be tried at all: plain if USER is offered there,
    else after STLS, else the implicit-TLS port."""
    if target.pop3 and "USER" in capabilities:
        return "plain"
    if target.pop3 and "STLS" in capabilities:
        return "stls"
    return "implicit" if target.pop3s else "plain"


def _wrong() -> str:
    return "wrong-" + secrets.token_hex(4)


def _is_auth(response: Response) -> bool:
    return not response.ok and response.code is not None and response.code[0].upper() == "AUTH"


@case(
    "rfc3206/5/auth-code-on-bad-password",
    MAY,
    "3206",
    "5",
    "The AUTH response code informs the client that there is a problem with the user's credentials. "
    "This might be an incorrect password, an unknown user name, an expired account, an attempt to "
    "authenticate in violation of policy (such as from an invalid location or during an unauthorized "
    "time), or some other problem.",
    ref="rfc3206/5/1",
)
def test_auth_code_on_wrong_password(pop, target, capabilities):
    """Record whether a wrong password and an unknown user get ``-ERR [AUTH]``."""
    mode = _login_mode(target, capabilities)
    wrong_password = login_error(pop(mode, login=False), target.user.user, _wrong())
    expect(_is_auth(wrong_password), "wrong password", "-ERR [AUTH] ...", wrong_password.raw)
    unknown = login_error(pop(mode, login=False), "pop3suite-" + secrets.token_hex(4), _wrong())
    expect(_is_auth(unknown), "unknown user", "-ERR [AUTH] ...", unknown.raw)


@case(
    "rfc3206/6/auth-resp-code-every-method",
    MUST,
    "3206",
    "6",
    "The AUTH-RESP-CODE capability indicates that the server includes the AUTH response code with any "
    "authentication error caused by a problem with the user's credentials.",
    ref="rfc3206/6/1",
)
def test_auth_code_on_every_credential_failure(pop, target, capabilities, need):
    """With AUTH-RESP-CODE, USER/PASS, APOP and AUTH PLAIN failures all carry ``[AUTH]``."""
    need("AUTH-RESP-CODE")
    mode = _login_mode(target, capabilities)
    failures: dict[str, Response] = {
        "USER/PASS, wrong password": login_error(pop(mode, login=False), target.user.user, _wrong()),
        "USER/PASS, unknown user": login_error(
            pop(mode, login=False), "pop3suite-" + secrets.token_hex(4), _wrong()
        ),
    }
    client = pop(mode, login=False)
    if apop_timestamp(client.greeting) is not None:
        account = target.apop_user or target.user
        failures["APOP, wrong digest"] = client.apop(account.user, _wrong(), check=False)
    if "PLAIN" in capabilities.get("SASL", "").upper().split():
        failures["AUTH PLAIN, wrong password"] = pop(mode, login=False).auth_plain(
            target.user.user, _wrong(), check=False
        )
    for method, response in failures.items():
        expect(
            _is_auth(response),
            f"{method}: credential failure carries [AUTH]",
            "-ERR [AUTH] ...",
            response.raw,
        )


def _remove_message_file(maildir: Path, nonce: str) -> bool:
    """Remove the Maildir file holding the scratch message ``nonce``."""
    needle = nonce.encode()
    for sub in ("new", "cur"):
        folder = maildir / sub
        for path in folder.iterdir() if folder.is_dir() else ():
            if needle in path.read_bytes()[:4096]:
                path.unlink()
                return True
    return False


@case(
    "rfc3206/4/sys-code-on-storage-failure",
    INFO,
    "3206",
    "4",
    "The SYS response code announces that a failure is due to a system error, as opposed to the user's "
    "credentials or an external condition. It is hierarchical, with two possible second-level codes: "
    "TEMP and PERM.",
    ref="rfc3206/4/1",
    destructive=True,
)
def test_sys_code_on_storage_failure(pop, target, seeder, scratch, mailbox):
    """Record the reply to RETR of a scratch message whose file vanished (``[SYS/TEMP]``, ``[SYS/PERM]``)."""
    if seeder.route != "maildir":
        unimplemented("needs --seed maildir:DIR to take a message file away under the server")
    (nonce,) = scratch(1)
    client = pop()
    number = mailbox.locate_scratch(client, [nonce]).get(nonce)
    if number is None:
        unimplemented("the scratch message did not arrive in the maildrop")
    if not _remove_message_file(Path(target.seed.split(":", 1)[1]), nonce):
        unimplemented("the scratch message's file was not found in the Maildir")
    response = client.command(f"RETR {number}", check=False)
    if response.ok:
        client.read_body()
    expect(not response.ok, "RETR of a message whose file vanished", "-ERR [SYS/TEMP] ...", response.raw)
    expect(
        response.code is not None and response.code[0].upper() == "SYS",
        "a storage failure carries a SYS code",
        "-ERR [SYS/TEMP] or -ERR [SYS/PERM]",
        response.raw,
    )
