"""pop3suite: a POP3/POP3S conformance and load-testing suite.

Three products share this package: the reference server
(``reference_server``), the conformance suite (``conformance``) and the load
suite (``load``).  ``pop3suite.proto`` is the one place where POP3 is parsed.

PYTEST_DONT_REWRITE: the distribution carries a pytest plugin
(``pop3suite.conformance.plugin``), so pytest marks this package for
assertion rewriting; ``pop3suite check`` has imported it before pytest
starts, and this marker keeps pytest from warning that it cannot rewrite
this (assert-free) module.
"""

__version__ = "0.1.0"
