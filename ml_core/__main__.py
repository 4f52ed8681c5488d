"""``python -m ml_core`` runs the ``bfe`` command line."""

import sys

from .cli import main

sys.exit(main())
