"""`python -m swapjax.evaluate`: see `swapjax.evaluate.cli`."""

import sys

from swapjax.evaluate.cli import main

if __name__ == "__main__":
    sys.exit(main())
