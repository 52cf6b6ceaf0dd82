"""The client interop matrix: real POP3 clients against POP3 servers.

``pop3suite clients`` runs every driver in :data:`CLIENTS` in every mode,
login and keep/delete behaviour it supports, checks byte-exact retrieval
and writes the matrix (see ``docs/clients.md``).
"""

from __future__ import annotations

from .base import Client
from .curl import Curl
from .fetchmail import Fetchmail
from .getmail import Getmail
from .mpop import Mpop
from .mutt import Mutt
from .pythonpoplib import PythonPoplib

#: name -> driver class, in the matrix's row order.
CLIENTS: dict[str, type[Client]] = {
    cls.name: cls for cls in (Curl, Fetchmail, Getmail, Mpop, Mutt, PythonPoplib)
}

__all__ = ["CLIENTS", "Client"]
