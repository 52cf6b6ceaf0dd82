"""The pop3suite conformance suite: pytest tests runnable against any POP3
server, each tied to an RFC section and a requirement level.

Run it with ``pop3suite check [URL ...]`` or ``pytest --pop3-target URL`` (any directory).
Theory of operation: :mod:`pop3suite.conformance.case` defines levels, outcomes and the
``@case`` decorator; :mod:`pop3suite.target.model` turns options into a target;
:mod:`pop3suite.conformance.plugin` is the pytest plugin (entry point ``pytest11:
pop3suite``) with the ``--pop3-`` options, the grading and the reports
(:mod:`pop3suite.conformance.report`); ``conftest.py`` holds the cases'
fixtures; :mod:`pop3suite.conformance.helpers` holds the one copy of each
helper the cases share.
"""
