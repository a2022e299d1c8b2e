"""Trains a swap model: `python train.py --config configs/swap_tiny.py --workdir runs/tiny [--set key=value ...]`.

Parses the command line, loads the config with its overrides and calls `swapjax.train.train`; everything else
lives in `swapjax/train/` (docs/design.md, "Training"). Running the same command again resumes the run.
Exit codes: 0 finished (or saved and stopped on SIGTERM), 1 stopped after too many non-finite steps, 2 bad
input (one line naming it).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from swapjax.cli_parser import OneLineParser

    parser = OneLineParser(prog="python train.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a configs/*.py file whose get_config() returns a Config")
    parser.add_argument("--workdir", required=True, help="folder for checkpoints, metrics and exports")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="dotted config overrides, e.g. train.steps=10 optimizer.lr=3e-4")
    args = parser.parse_args(argv)

    from swapjax.config import load_config
    from swapjax.errors import ConfigError
    from swapjax.errors import CheckpointError
    from swapjax.train import train

    try:
        config = load_config(args.config, args.overrides)
        outcome = train(config, args.workdir)
    except (ConfigError, CheckpointError) as err:
        print(f"train.py: {err}", file=sys.stderr)
        return 2
    return 1 if outcome.status == "nonfinite" else 0


if __name__ == "__main__":
    sys.exit(main())
