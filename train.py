"""Trains a swap model: `python train.py --config configs/swap_tiny.py --workdir runs/tiny [--set key=value ...]`.

Parses the command line, loads the config with its overrides and calls `swapjax.train.train`; everything else
lives in `swapjax/train/` (docs/design.md, "Training"). Running the same command again resumes the run.
`--set` may be repeated; every override of every `--set` applies (a later value of the same key wins).
Exit codes (`swapjax.entry`): 0 finished (or saved and stopped on SIGTERM), 1 stopped after too many non-finite
steps, 2 bad input: one `error:` line naming it, and a `--workdir` the run created is removed again.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from swapjax.cli_parser import OneLineParser
    from swapjax.entry import add_set_argument, run_main

    parser = OneLineParser(prog="python train.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a configs/*.py file whose get_config() returns a Config")
    parser.add_argument("--workdir", required=True, help="folder for checkpoints, metrics and exports")
    add_set_argument(parser)
    args = parser.parse_args(argv)
    return run_main(lambda: _train(args), creates=[args.workdir])


def _train(args: argparse.Namespace) -> int:
    from swapjax.config import load_config
    from swapjax.entry import exit_code
    from swapjax.train import train

    return exit_code([train(load_config(args.config, args.overrides), args.workdir)])


if __name__ == "__main__":
    sys.exit(main())
