"""The pop3suite conformance suite: pytest tests runnable against any POP3
server, each tied to an RFC section and a requirement level.

Run it with ``pop3suite check [URL ...]`` or ``pytest pop3suite/conformance --target URL``.
Theory of operation: :mod:`pop3suite.conformance.case` defines levels, outcomes and the
``@case`` decorator; :mod:`pop3suite.target.model` turns options into a target;
``pop3suite/conformance/conftest.py`` is the pytest plugin that grades each test and
writes the reports (:mod:`pop3suite.conformance.report`); :mod:`pop3suite.conformance.helpers`
holds the one copy of each helper the cases share.
"""
