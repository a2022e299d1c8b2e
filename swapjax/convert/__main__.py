"""Convert a Wan2.1 transformer or VAE checkpoint, or a whole diffusers Wan pipeline, to swapjax parameters.

    python -m swapjax.convert --src DIR --out OUT [--kind auto|dit|vae] [--dtype float32|bfloat16] [--allow-pickle]
                              [--swap-config configs/swap_wan2_1_14b.py [--set KEY=VALUE ...]]
    python -m swapjax.convert --pipeline Wan2.1-I2V-14B-480P-Diffusers --out converted/
                              [--swap-config configs/swap_wan2_1_14b.py [--set KEY=VALUE ...]] [--dtype ...]

`--pipeline`: every part the swap model needs (transformer, VAE, umT5 text encoder and its tokenizer, and for I2V
the CLIP image encoder and its preprocessing) into one folder with one manifest (`swapjax.convert.pipeline`); a
folder missing a part is one line naming it. `sample.py --pipeline OUT` reads that folder.

`--src`: a diffusers model directory (`transformer/` or `vae/` of a Wan export: config.json + safetensors), an
original Wan2.1 directory (config.json with `dim`, `num_heads`, ...) or checkpoint file. `--kind auto` reads
`_class_name` from config.json (WanTransformer3DModel / WanModel -> dit, AutoencoderKLWan -> vae) or, without
one, looks at the tensor names. Writes OUT/ (see `swapjax.convert.saved`); read it back with
`swapjax.convert.saved.load_converted(OUT)`. With `--swap-config`, a base transformer (I2V-14B, or T2V-1.3B) is
widened into that config's swap model (`swapjax.convert.swap`: base columns kept, new ones zero) and saved as kind
"swap".

OUT is checked before anything is read, and written under a temporary name that becomes OUT only when complete.
Bad input (a broken config.json or checkpoint, an unusable OUT, a full disk) exits with code 2 and one line
naming the input and the fix; so do SIGTERM and Ctrl-C during the work (one line saying what was kept).
Either way nothing is left behind. Warnings (NaN/Inf weights, replaced VAE statistics) are one line each on stderr.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import warnings
from typing import Sequence

import ml_dtypes
import numpy as np
from flax import nnx

from swapjax.atomic import Terminated, check_output
from swapjax.cli_parser import OneLineParser
from swapjax.config import Config, apply_overrides
from swapjax.convert.checkpoint_io import ConversionWarning, TensorReader, read_json_config
from swapjax.convert.saved import save_converted
from swapjax.entry import EXIT_BAD_INPUT, EXIT_OK, add_set_argument, run_main, say
from swapjax.errors import CheckpointError, ConfigError
from swapjax.models.layers import DTYPES
from swapjax.python_file import call_factory

DIT_CLASSES = ("WanTransformer3DModel", "WanModel")
VAE_CLASSES = ("AutoencoderKLWan",)


def detect_kind(src: pathlib.Path, *, allow_pickle: bool = False) -> str:
    """"dit" or "vae" from config.json's `_class_name`, else from the tensor names."""
    cfg_file = (src if src.is_dir() else src.parent) / "config.json"
    if cfg_file.is_file():
        name = read_json_config(src).get("_class_name")
        if name in DIT_CLASSES:
            return "dit"
        if name in VAE_CLASSES:
            return "vae"
    keys = TensorReader(src, allow_pickle=allow_pickle).keys()
    if any(".self_attn." in k or ".attn1." in k for k in keys):
        return "dit"
    if any(k.startswith(("encoder.", "decoder.")) for k in keys):
        return "vae"
    raise CheckpointError(f"cannot tell whether {str(src)!r} is a Wan transformer or VAE (config.json "
                          "_class_name is not one of " f"{DIT_CLASSES + VAE_CLASSES}): pass --kind dit or --kind vae")


def load_swap_config(path: str | pathlib.Path, overrides: Sequence[str] = ()) -> Config:
    """The `Config` of a `configs/swap_*.py` file with `--set` overrides applied; `ConfigError` naming
    `--swap-config` if it is not one."""
    path = pathlib.Path(path)
    name = f"--swap-config {str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"{name} does not exist: pass a configs/swap_*.py file")
    if path.suffix != ".py":
        raise ConfigError(f"{name} is not a Python config file: pass a configs/swap_*.py file (get_config() "
                          "returning a Config with a swap section)")
    try:
        config = call_factory(path, "get_config", Config, label="--swap-config",
                              missing_hint="pass a configs/swap_*.py file", syntax_hint=": fix it")
    except ConfigError:
        raise
    except Exception as err:  # running the user's file failed: one line naming it instead of a traceback
        said = " ".join(str(err).split())[:300]
        raise ConfigError(f"{name} failed while loading ({type(err).__name__}: {said}): fix it or pass a "
                          "configs/swap_*.py file") from None
    config = apply_overrides(config, overrides)
    if config.swap is None:
        raise ConfigError(f"{name} has no swap section: pass a configs/swap_*.py file")
    return config


def convert(src: str | pathlib.Path, out: str | pathlib.Path, *, kind: str = "auto", dtype: str | None = None,
            allow_pickle: bool = False, swap_config: str | pathlib.Path | None = None,
            overrides: Sequence[str] = ()) -> pathlib.Path:
    """Converts `src` and writes `out`; returns the written directory.

    `overrides` (`key=value`, see `swapjax.config.apply_overrides`) apply to `swap_config`. `out` and
    `swap_config` are checked before any tensor is read."""
    out = check_output(out)
    src = pathlib.Path(src)
    if not src.exists():
        raise CheckpointError(f"--src {str(src)!r} does not exist: pass a diffusers model directory or a "
                              "checkpoint file")
    if overrides and swap_config is None:
        raise ConfigError(f"--set {' '.join(overrides)} needs --swap-config: overrides change the swap model's "
                          "config (e.g. --swap-config configs/swap_wan2_1_14b.py --set swap.anchor=false)")
    config = load_swap_config(swap_config, overrides) if swap_config is not None else None
    if kind == "auto":
        kind = detect_kind(src, allow_pickle=allow_pickle)
    if config is not None:
        if kind != "dit":
            raise CheckpointError(f"--swap-config widens a transformer, but {str(src)!r} is a {kind}: pass the "
                                  "base transformer directory (I2V-14B or T2V-1.3B)")
        from swapjax.convert.swap import convert_swap

        if dtype is not None:
            config = config.replace(dit=dataclasses.replace(config.dit, param_dtype=dtype))
        dit_cfg, state = convert_swap(src, config, allow_pickle=allow_pickle)
        return save_converted(out, "swap", (dit_cfg, config.swap), state, source=str(src))
    if kind == "dit":
        from swapjax.convert.dit import convert_dit

        cfg, state = convert_dit(src, dtype=dtype, allow_pickle=allow_pickle)
    else:
        from swapjax.convert.vae import convert_vae  # lazily: the VAE converter is a separate module

        cfg, state = convert_vae(src, allow_pickle=allow_pickle)
        if dtype is not None and dtype != cfg.param_dtype:
            cfg = dataclasses.replace(cfg, param_dtype=dtype)
            target = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}[dtype]
            for _, var in nnx.to_flat_state(state):
                var.set_value(np.asarray(var.get_value()).astype(target))
    return save_converted(out, kind, cfg, state, source=str(src))


def convert_pipeline_cli(pipeline: str | pathlib.Path, out: str | pathlib.Path, *, dtype: str | None = None,
                         swap_config: str | pathlib.Path | None = None, overrides: Sequence[str] = ()) -> pathlib.Path:
    """`--pipeline`: the swap config (if any) is loaded and `out` checked before any tensor is read."""
    from swapjax.convert.pipeline import convert_pipeline

    check_output(out)
    if overrides and swap_config is None:
        raise ConfigError(f"--set {' '.join(overrides)} needs --swap-config: overrides change the swap model's "
                          "config (e.g. --swap-config configs/swap_wan2_1_14b.py --set swap.anchor=false)")
    config = load_swap_config(swap_config, overrides) if swap_config is not None else None
    return convert_pipeline(pipeline, out, config=config, dtype=dtype)


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """`warnings.showwarning` for the CLI: one line per warning."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 written; 2 bad input, a full disk, SIGTERM or Ctrl-C: one
    `error:` line, and nothing left behind)."""
    parser = OneLineParser(prog="python -m swapjax.convert", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--src", help="diffusers model directory or checkpoint file")
    source.add_argument("--pipeline", help="a whole diffusers Wan pipeline folder (every part, one manifest)")
    parser.add_argument("--out", required=True, help="output directory (must not exist)")
    parser.add_argument("--kind", choices=("auto", "dit", "vae"), default="auto")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default=None, help="parameter dtype (default: the config's)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow .pth/.bin pickle checkpoints (they can run code: only for trusted files)")
    add_set_argument(parser, help="overrides of the --swap-config file, e.g. swap.anchor=false "
                     "dit.param_dtype=bfloat16")
    parser.add_argument("--swap-config", default=None,
                        help="a configs/swap_*.py file: widen the base transformer into that swap model")
    args = parser.parse_args(argv)
    return run_main(lambda: _run(args), creates=[args.out])


def _run(args) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("always", ConversionWarning)
        warnings.showwarning = _print_warning
        try:
            if args.pipeline is not None:
                out = convert_pipeline_cli(args.pipeline, args.out, dtype=args.dtype, swap_config=args.swap_config,
                                           overrides=args.overrides)
            else:
                out = convert(args.src, args.out, kind=args.kind, dtype=args.dtype, allow_pickle=args.allow_pickle,
                              swap_config=args.swap_config, overrides=args.overrides)
        except (Terminated, KeyboardInterrupt) as err:
            stop = "SIGTERM" if isinstance(err, Terminated) else "Ctrl-C"
            out = pathlib.Path(args.out)
            if out.exists():  # the signal came after the rename: the output is complete
                print(f"wrote {out} (then stopped by {stop})")
                return EXIT_OK
            say(f"stopped by {stop} while converting: nothing was written to {str(out)!r} (its temporary folder, "
                "if any, was removed); run the command again to convert")
            return EXIT_BAD_INPUT
    print(f"wrote {out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
