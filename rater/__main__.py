"""``python -m rater``: the same as the ``rater`` command."""

import sys

from .cli import main

sys.exit(main())
