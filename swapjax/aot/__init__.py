"""Ahead-of-time plans: compile the train and sampling steps for a named TPU slice (libtpu's compile-only
devices, no TPU needed) and report per-device memory against the chip's HBM, FLOPs and projected step time
(`python -m swapjax.aot`, docs/design.md "Ahead-of-time plans")."""
