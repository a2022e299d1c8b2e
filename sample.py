"""Swap the subject of a video (or a batch of them) with a swapjax swap model.

    python sample.py --config configs/swap_tiny.py --checkpoint CKPT --video walk.mp4 --mask walk_mask.json \
        --reference cat.png --out out/walk.mp4 [--set sample.sampler.num_steps=30 ...]

Options, input formats, the checkpoint layout and batch mode: `python sample.py --help`, README "Sampling",
`swapjax/sample/cli.py`. The work lives in `swapjax.sample` (`runner.py`).
"""

import sys

from swapjax.sample.cli import main

if __name__ == "__main__":
    sys.exit(main())
