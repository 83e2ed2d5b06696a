"""``python -m voxmetric.cli``: the ``voxmetric`` command."""

import sys

from . import main

sys.exit(main())
