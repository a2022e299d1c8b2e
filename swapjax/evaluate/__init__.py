"""Offline evaluation: sample every case of a folder or JSON list with `swapjax.sample`, score the results with
`swapjax.metrics`, and write a metrics table (CSV + Markdown), one MP4 per case and a PNG contact sheet.

    python -m swapjax.evaluate --config configs/swap_tiny.py --cases cases/ --checkpoint ckpt --out eval/

`cli.py` is the command line, `cases.py` reads the case list, `scores.py` scores one swapped case and
`report.py` writes the table and the sheet (docs/design.md, "Evaluation").
"""
