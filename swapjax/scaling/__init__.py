"""Scaling sweeps: train a grid of small widths and depths at given compute budgets, fit loss against compute
(`python -m swapjax.scaling`, docs/design.md "Scaling sweeps")."""
