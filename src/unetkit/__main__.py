"""``python -m unetkit`` (and ``torchrun -m unetkit``) runs the CLI."""

import sys

from .cli import main

sys.exit(main())
