"""``python -m asrforge.cli``: the ``asrforge`` command (what ``torchrun -m asrforge.cli`` runs)."""

import sys

from asrforge.cli import main

sys.exit(main())
