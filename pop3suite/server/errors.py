"""Errors shared by the server's config readers.

``ConfigError`` lives here, not in ``config.py``, so that ``policy.py`` and
``prefork.py`` (which parse their own tables of the same file) can raise it
without importing ``config.py``, which in turn imports them: no import cycle.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A config problem, worded for the user (file, key, what is wrong)."""
