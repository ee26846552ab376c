"""``python -m ovserve.server``: the same as the ``ovserve-server`` console script."""

import sys

from .cli import main

sys.exit(main())
