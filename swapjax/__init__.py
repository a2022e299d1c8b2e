"""swapjax: video subject swapping on a Wan2.1 video DiT, in JAX/Flax NNX."""

__version__ = "0.1.0"
