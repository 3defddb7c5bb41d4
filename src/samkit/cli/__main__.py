"""`python -m samkit.cli`: the `samkit` command."""

import sys

from . import main

sys.exit(main())
