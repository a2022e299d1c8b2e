"""`python -m swapjax.aot`: see swapjax/aot/cli.py."""

import sys

from swapjax.aot.cli import main

sys.exit(main())
