"""``python -m tnlib``: the same as the ``tnlib`` command."""

import sys

from .cli import main

sys.exit(main())
