"""The argument parser every swapjax command line uses: a bad command line is one `error:` line, exit code 2."""

from __future__ import annotations

import argparse
import sys


class OneLineParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose errors are one line naming the problem and `--help` (exit code 2),
    instead of the usage block followed by the message."""

    def error(self, message: str):
        print(f"error: {message}: see {self.prog} --help", file=sys.stderr)
        sys.exit(2)
