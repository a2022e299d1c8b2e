"""The from-scratch demo: `python -m swapjax.demo --workdir runs/demo` trains a VAE and a swap DiT on the
embedded synthetic data (`swapjax.train`), swaps the subjects of held-out synthetic clips with known ground
truth (`swapjax.evaluate`) and prints the headline figures against their goals (see `cli.py`)."""
