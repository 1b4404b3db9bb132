"""``python -m prunelib``: the same as the ``prunelib`` command."""

import sys

from .cli import main

sys.exit(main())
