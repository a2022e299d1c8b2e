"""Writes an offline latent cache, so training never runs the VAE encoder in its loop.

    python -m swapjax.train.cache_cli --config configs/swap_tiny_train.py --out runs/cache [--draws 4] [--pixels]
                                  [--vae runs/stage0/vae] [--set key=value ...]
    python train.py --config configs/swap_tiny_train.py --workdir runs/cached --set train.latent_cache=runs/cache

The cache holds `--draws` examples per record (draw d = the pixel pipeline's example in epoch d; what is cached
and why in `swapjax/train/latent_cache.py`), encoded by the VAE the DiT stage would use: `--vae` (a converted VAE
folder such as a VAE stage's `WORKDIR/vae`), else the config's `train.vae_init`, else the random VAE from the
config's seed. `--pixels` also stores the target video, subject mask and keypoints (default: only when the
config's loss terms read them). OUT appears only when complete; bad input is one `error:` line, exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

PROG = "python -m swapjax.train.cache_cli"


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; 0 when written, 2 for bad input (one `error:` line), 143 on SIGTERM; `--out` appears only
    when complete."""
    from swapjax.cli_parser import OneLineParser
    from swapjax.entry import add_set_argument, run_main

    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a configs/*.py file (the run the cache is for)")
    parser.add_argument("--out", required=True, help="output folder (must not exist)")
    parser.add_argument("--draws", type=int, default=1, help="examples cached per record (epochs before repeating)")
    parser.add_argument("--pixels", action="store_true", help="also store the video, subject mask and keypoints")
    parser.add_argument("--vae", help="a converted VAE folder (default: train.vae_init, else the seed's random VAE)")
    add_set_argument(parser, help="dotted config overrides, as train.py takes them")
    args = parser.parse_args(argv)
    return run_main(lambda: _write(args))


def _write(args: argparse.Namespace) -> int:
    from swapjax.atomic import Terminated, check_output
    from swapjax.config import load_config
    from swapjax.entry import say
    from swapjax.train.cache_writer import write_cache
    from swapjax.train.loop import cache_keys, with_condition_data

    config = with_condition_data(load_config(args.config, args.overrides))  # the data the conditions read
    out = check_output(args.out)
    if args.vae is not None:
        config = config.replace(train=dataclasses.replace(config.train, vae_init=args.vae))
    pixels = args.pixels or any(k in ("video", "subject_mask", "keypoints") for k in cache_keys(config))
    try:
        index = write_cache(config, out, draws=args.draws, pixels=pixels)
    except Terminated:  # exit code 143 (swapjax.entry), after one line
        say(f"stopped by SIGTERM while writing: nothing was written to {args.out!r}")
        raise
    print(f"wrote {index['draws']} draw(s) of {index['records']} records to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
