"""`python -m swapjax.demo`: see `swapjax/demo/cli.py`."""

import sys

from swapjax.demo.cli import main

if __name__ == "__main__":
    sys.exit(main())
