"""The from-scratch demo: `python -m swapjax.demo --workdir runs/demo` trains a VAE and a swap DiT on the
embedded synthetic data (`swapjax.train`), swaps the subjects of synthetic clips training never read, from
held-out families and from the training families, with known ground truth (`swapjax.evaluate`), and prints the
headline figures of each set against their goals (see `cli.py`)."""
