"""A deliberately broken POP3 server, for testing the conformance suite itself.

It is the reference server (``reference_server``, what ``pop3suite serve``
runs) with exactly one *fault* switched on: a subclass or wrapper of one of
its parts, installed in its own process before the server starts.  Nothing
here is part of the product; the reference server has no fault hooks.

``python -m tests.broken_server --fault NAME --config LAB/pop3suite.toml``
serves one fault; ``--list`` prints the registry.  :mod:`.faults` holds the
registry (name, area, description, the case ids expected to catch it) and
:mod:`.launch` starts a lab and a broken server for a test.
"""
