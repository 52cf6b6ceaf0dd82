"""The load suite: Locust users for POP3 and SMTP, scenarios as data, a
server monitor, a message ledger and SLO verdicts.

Modules that import Locust (``users``, ``locustfile``) must only be imported
in a Locust process: importing Locust monkey-patches sockets with gevent.
``scenario``, ``accounting``, ``metrics``, ``verdicts``, ``monitor`` and
``labsetup`` are plain Python and safe anywhere.
"""
