"""``python -m sigil`` is the ``sigil`` command."""

import sys

from sigil.cli import main

sys.exit(main())
