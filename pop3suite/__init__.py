"""pop3suite: a POP3/POP3S conformance and load-testing suite.

Three products share this package: the reference server
(``reference_server``), the conformance suite (``conformance``) and the load
suite (``load``).  ``pop3suite.proto`` is the one place where POP3 is parsed.
"""

__version__ = "0.1.0"
