"""``python -m reliability`` is the ``reliability`` command."""

import sys

from reliability.cli.main import main

sys.exit(main())
