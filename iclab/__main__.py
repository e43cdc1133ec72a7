"""``python -m iclab`` is the ``iclab`` command."""

import sys

from iclab.cli import main

sys.exit(main())
