"""``python -m discosbackend``: the same as ``discos-backend``."""

import sys

from discosbackend.cli import main

sys.exit(main())
