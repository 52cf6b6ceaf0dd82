"""``python -m pop3suite`` is the ``pop3suite`` command."""

import sys

from .cli import main

sys.exit(main())
