"""``python -m ml_core`` runs the ``bfe`` command line."""

import sys

from ml_core.cli import main

sys.exit(main())
