"""``python -m hub`` is the ``cohub`` command."""

import sys

from hub.cli import main

sys.exit(main())
