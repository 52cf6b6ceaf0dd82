"""RFC 3206 "The SYS and AUTH POP Response Codes": ``[AUTH]`` on credential
failures (always when AUTH-RESP-CODE is advertised), ``[SYS/TEMP]`` and
``[SYS/PERM]`` on system failures."""

from __future__ import annotations

from pathlib import Path

from pop3suite.client import apop_timestamp
from pop3suite.conformance.case import INFO, MAY, MUST, case, expect, observe, unimplemented
from pop3suite.conformance.conftest import home_mode, login_error
from pop3suite.conformance.helpers import response_code, sasl_mechanisms, unknown_user, wrong_password
from pop3suite.proto import Response


def _is_auth(response: Response) -> bool:
    return not response.ok and response_code(response) == "AUTH"


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
def test_auth_code_on_wrong_password(pop, target, capabilities, request):
    """Record whether a wrong password and an unknown user get ``-ERR [AUTH]``."""
    mode = home_mode(target, capabilities)
    wrong = login_error(pop(mode, login=False), target.user.user, wrong_password())
    observe(request, f"wrong password: {wrong.raw!r}")
    expect(_is_auth(wrong), "wrong password", expected="-ERR [AUTH] ...", actual=wrong.raw)
    unknown = login_error(pop(mode, login=False), unknown_user(), wrong_password())
    observe(request, f"unknown user: {unknown.raw!r}")
    expect(_is_auth(unknown), "unknown user", expected="-ERR [AUTH] ...", actual=unknown.raw)


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
    mode = home_mode(target, capabilities)
    failures: dict[str, Response] = {
        "USER/PASS, wrong password": login_error(pop(mode, login=False), target.user.user, wrong_password()),
        "USER/PASS, unknown user": login_error(pop(mode, login=False), unknown_user(), wrong_password()),
    }
    client = pop(mode, login=False)
    if apop_timestamp(client.greeting) is not None:
        account = target.apop_user or target.user
        failures["APOP, wrong digest"] = client.apop(account.user, wrong_password(), check=False)
    if "PLAIN" in sasl_mechanisms(capabilities):
        failures["AUTH PLAIN, wrong password"] = pop(mode, login=False).auth_plain(
            target.user.user, wrong_password(), check=False
        )
    for method, response in failures.items():
        expect(
            _is_auth(response),
            f"{method}: credential failure carries [AUTH]",
            expected="-ERR [AUTH] ...",
            actual=response.raw,
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
def test_sys_code_on_storage_failure(pop, target, seeder, scratch, mailbox, request):
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
    observe(request, f"RETR of a message whose file vanished: {response.raw!r}")
    if response.ok:
        client.read_body()
    expect(
        not response.ok,
        "RETR of a message whose file vanished",
        expected="-ERR [SYS/TEMP] ...",
        actual=response.raw,
    )
    expect(
        response.code is not None and response.code[0].upper() == "SYS",
        "a storage failure carries a SYS code",
        expected="-ERR [SYS/TEMP] or -ERR [SYS/PERM]",
        actual=response.raw,
    )
