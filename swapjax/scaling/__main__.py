"""`python -m swapjax.scaling`: see swapjax/scaling/cli.py."""

import sys

from swapjax.scaling.cli import main

sys.exit(main())
