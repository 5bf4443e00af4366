"""``python -m vidmem`` is the ``vidmem`` command."""

import sys

from .cli import main

sys.exit(main())
