"""Shared machinery of the server benchmarks.

``bench_server.py`` (the reference server alone) and ``compare.py`` (the
reference server and Dovecot side by side) are thin drivers over these
modules: ``messages`` (the test mail), ``targets`` (a server under test and
its accounts), ``reflab``/``dovecot`` (building each target), ``clients``
(the load-client processes), ``meters`` (CPU, RSS, machine load),
``results`` (rows and tables) and one module per figure (``fig_sessions``,
``fig_retr``, ``fig_uidl``, ``fig_idle``, ``ceilings``).
"""
