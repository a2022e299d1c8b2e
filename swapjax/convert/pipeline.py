"""A whole diffusers Wan pipeline folder -> one converted folder with one manifest (`python -m swapjax.convert
--pipeline FOLDER --out OUT [--swap-config CFG [--set ...]] [--dtype ...]`).

    FOLDER/ (diffusers `save_pretrained`)       OUT/
      transformer/  -> (widened by CFG) ->        dit/             kind "swap" (with CFG) or "dit"
      vae/                                        vae/             kind "vae"
      text_encoder/ (UMT5EncoderModel)            text_encoder/    kind "umt5"
      tokenizer/    (tokenizer.json, ...)         tokenizer/       the files, copied
      image_encoder/ (CLIPVisionModel; I2V)       image_encoder/   kind "clip_vision"   (when the folder has one)
      image_processor/ (preprocessor_config)      image_processor/ the file, copied     (with the image encoder)
                                                  manifest.json    {"format", "version", "source", "parts": {name:
                                                                    {"kind", "source"}}}

`dit/` and `vae/` are the sampling checkpoint layout (`swapjax/sample/checkpoint.py`), so `sample.py --pipeline
OUT` reads the same folder. Every part is checked before any tensor is read: a missing part is one
`CheckpointError` line naming it; the text encoder's width must be the DiT's `text_dim` and the image encoder's
its `image_dim` (an I2V transformer needs an image encoder). The folder is written through `swapjax.atomic`, so it
appears only when complete.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
from typing import Any

import ml_dtypes
import numpy as np
from flax import nnx

from swapjax.atomic import atomic_write, check_output
from swapjax.config import Config
from swapjax.errors import ConfigError
from swapjax.convert.checkpoint_io import config_from_json
from swapjax.errors import CheckpointError
from swapjax.convert.saved import save_converted

MANIFEST = "manifest.json"
FORMAT = "swapjax-pipeline"
# part -> (source folder in the diffusers pipeline, what it is)
PARTS = {"dit": ("transformer", "the Wan transformer"), "vae": ("vae", "the Wan VAE"),
         "text_encoder": ("text_encoder", "the umT5 text encoder"), "tokenizer": ("tokenizer", "its tokenizer"),
         "image_encoder": ("image_encoder", "the CLIP image encoder of I2V models"),
         "image_processor": ("image_processor", "the image encoder's preprocessing")}
FILE_KINDS = {"tokenizer": "tokenizer.json", "image_processor": "preprocessor_config.json"}


def _missing(root: pathlib.Path, part: str, why: str = "") -> CheckpointError:
    folder, what = PARTS[part]
    return CheckpointError(f"pipeline {str(root)!r} has no {folder}/ ({what}){why}: pass a complete diffusers Wan "
                           "pipeline folder (as save_pretrained writes it, e.g. Wan2.1-I2V-14B-480P-Diffusers)")


def plan_parts(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """{part: source folder} of a pipeline folder, checked (see the module docstring); reads configs only."""
    from swapjax.convert.clip_vision import clip_vision_config_from_json
    from swapjax.convert.dit import dit_config_from_json
    from swapjax.convert.umt5 import umt5_config_from_json

    if not root.is_dir():
        raise CheckpointError(f"--pipeline {str(root)!r} is not a folder: pass a diffusers Wan pipeline folder")
    parts = {}
    for part in ("dit", "vae", "text_encoder", "tokenizer"):
        folder = root / PARTS[part][0]
        if not folder.is_dir():
            raise _missing(root, part)
        parts[part] = folder
    if not (parts["tokenizer"] / FILE_KINDS["tokenizer"]).is_file():
        raise _missing(root, "tokenizer", f" holding {FILE_KINDS['tokenizer']}")
    dit = config_from_json(parts["dit"], dit_config_from_json)
    text = config_from_json(parts["text_encoder"], umt5_config_from_json)
    if text.d_model != dit.text_dim:
        raise CheckpointError(f"pipeline {str(root)!r}: text_encoder/ has width d_model = {text.d_model} but the "
                              f"transformer reads text_dim = {dit.text_dim}: the parts come from different models")
    if (root / "image_encoder").is_dir():
        if not (root / "image_processor" / FILE_KINDS["image_processor"]).is_file():
            raise _missing(root, "image_processor", f" holding {FILE_KINDS['image_processor']}")
        image = config_from_json(root / "image_encoder", clip_vision_config_from_json)
        if image.hidden_size != dit.image_dim:
            raise CheckpointError(f"pipeline {str(root)!r}: image_encoder/ has width hidden_size = {image.hidden_size}"
                                  f" but the transformer reads image_dim = {dit.image_dim}: the parts come from "
                                  "different models")
        parts["image_encoder"], parts["image_processor"] = root / "image_encoder", root / "image_processor"
    elif dit.is_i2v:
        raise _missing(root, "image_encoder", " but its transformer is I2V (image_dim set)")
    return parts


def _cast(state: nnx.State, dtype: str) -> None:
    target = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}[dtype]
    for _, var in nnx.to_flat_state(state):
        var.set_value(np.asarray(var.get_value()).astype(target))


def _convert_part(part: str, src: pathlib.Path, dst: pathlib.Path, config: Config | None, dtype: str | None) -> str:
    """Converts one part into `dst`; returns its kind."""
    if part == "dit" and config is not None:
        from swapjax.convert.swap import convert_swap

        if dtype is not None:
            config = config.replace(dit=dataclasses.replace(config.dit, param_dtype=dtype))
        dit_cfg, state = convert_swap(src, config)
        save_converted(dst, "swap", (dit_cfg, config.swap), state, source=str(src))
        return "swap"
    if part == "dit":
        from swapjax.convert.dit import convert_dit

        cfg, state = convert_dit(src, dtype=dtype)
        kind = "dit"
    elif part == "vae":
        from swapjax.convert.vae import convert_vae

        cfg, state = convert_vae(src)
        if dtype is not None and dtype != cfg.param_dtype:
            cfg = dataclasses.replace(cfg, param_dtype=dtype)
            _cast(state, dtype)
        kind = "vae"
    elif part == "text_encoder":
        from swapjax.convert.umt5 import convert_umt5

        cfg, state = convert_umt5(src, dtype=dtype)
        kind = "umt5"
    else:
        from swapjax.convert.clip_vision import convert_clip_vision

        cfg, state = convert_clip_vision(src, dtype=dtype)
        kind = "clip_vision"
    save_converted(dst, kind, cfg, state, source=str(src))
    return kind


def convert_pipeline(pipeline: str | pathlib.Path, out: str | pathlib.Path, *, config: Config | None = None,
                     dtype: str | None = None) -> pathlib.Path:
    """Converts every part of a diffusers Wan pipeline folder into `out` (see the module docstring).

    `config`: a swap run config (from `--swap-config`): the transformer is widened into its swap model. `dtype`:
    parameter dtype of every converted part (default: each config's). Returns the written folder."""
    out = check_output(out)
    root = pathlib.Path(pipeline).absolute()
    if config is not None and config.swap is None:
        raise ConfigError(f"config {config.name!r} has no swap section: pass a configs/swap_*.py file")
    parts = plan_parts(root)
    manifest: dict[str, Any] = {"format": FORMAT, "version": 1, "source": str(root), "parts": {}}
    with atomic_write(out, replace=False, make_parents=True) as tmp:
        tmp.mkdir()
        for part, src in parts.items():
            if part in FILE_KINDS:  # tokenizer / preprocessing files: copied as they are
                shutil.copytree(src, tmp / part, ignore=shutil.ignore_patterns(".*"))
                kind = part
            else:
                kind = _convert_part(part, src, tmp / part, config, dtype)
            manifest["parts"][part] = {"kind": kind, "source": str(src.relative_to(root))}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def read_manifest(folder: str | pathlib.Path) -> dict[str, pathlib.Path]:
    """{part: folder} of a converted pipeline folder (written by `convert_pipeline`); `CheckpointError` naming
    the folder when it is not one or a part it lists is missing."""
    folder = pathlib.Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"--pipeline {str(folder)!r} holds no {MANIFEST}: pass a folder written by python -m "
                              "swapjax.convert --pipeline")
    try:
        meta = json.loads(path.read_text())
        parts = {name: folder / name for name in meta["parts"]}
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{str(path)!r} cannot be read ({type(err).__name__}: {err}): convert the pipeline "
                              "again") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a swapjax pipeline manifest (format {meta.get('format')!r})")
    gone = [name for name, p in parts.items() if not p.is_dir()]
    if gone:
        raise CheckpointError(f"converted pipeline {str(folder)!r} lacks {', '.join(f'{g}/' for g in gone)} that its "
                              f"{MANIFEST} lists: convert the pipeline again")
    return parts

