"""Sampling: inputs -> validate -> geometry -> VAE encode -> prefix caches -> steps -> decode -> composite -> files.

`swapjax.sample.cli` is the command line (`python sample.py`); `pipeline.swap_video(engine, inputs, ...)` runs one
job in Python (docs/design.md, "Sampling").
"""
