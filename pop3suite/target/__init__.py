"""The server under test, as every part of the suite sees it (a shared service).

* :mod:`~pop3suite.target.model`: :class:`Target` from URLs, options or a
  ``--target-file``, and ``--expectations`` files;
* :mod:`~pop3suite.target.preflight`: the one POP URL parser and the
  pre-flight checks (name, TCP, greeting, TLS trust, logins) every command
  runs before it starts;
* :mod:`~pop3suite.target.fixtures`: the fixture messages (``fixtures/*.eml``
  plus two generated big ones) and how a served copy is compared;
* :mod:`~pop3suite.target.seeding`: putting messages into a maildrop by the
  target's ``--seed`` route.

The conformance suite, the client matrix (:mod:`pop3suite.interop`) and the
load commands import it; it imports only the client, proto and
:mod:`pop3suite.inputs`, never a product (server, conformance, load) or a
command module (pyproject.toml, import-linter contracts).
"""
