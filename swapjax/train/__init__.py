"""Training: `train(config, workdir)` runs the VAE stage (if configured) and the swap DiT stage (see loop.py)."""


def train(config, workdir):
    """Trains `config` (a `swapjax.config.Config`) in `workdir`; see `swapjax.train.loop.train`."""
    from swapjax.train.loop import train as run

    return run(config, workdir)
