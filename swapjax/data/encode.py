"""Text and image encodings written once per dataset record, so training never runs the encoders in its loop.

    python -m swapjax.data.encode --pipeline converted/ --data DIR --out ENC [--split train]
                                  [--prompt "a video"] [--prompts prompts.json] [--seed 0]

For every record `i` of the split of the dataset built in DIR (`python -m swapjax.data.build`) it writes
`ENC/{i:07d}.npz` with `text` float32 `[n, text_dim]` (the umT5 embeddings of the record's prompt, cut where the
prompt's tokens end; the zeros after them are implied, see `read_encoding`) and, when the pipeline holds an image
encoder, `image` float32 `[Li, image_dim]` (the CLIP tokens of the record's reference crop: a subject frame drawn
with seed `(seed, i)` by `data/reference.py::reference_crop`). `ENC/encodings.json` records what was encoded. The
prompt of a record is `prompts.json[name]` (a JSON object from record name to prompt) or `--prompt` (default: the
empty prompt). The text encoder runs and is released before the image encoder loads. ENC appears only when
complete (`swapjax.atomic`); bad arguments are one `error:` line and exit code 2.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

from swapjax.atomic import Terminated, atomic_write, check_output
from swapjax.cli_parser import OneLineParser
from swapjax.data.reference import reference_crop
from swapjax.entry import EXIT_BAD_INPUT, EXIT_OK, run_main, say
from swapjax.errors import InputError

PROG = "python -m swapjax.data.encode"
INDEX_FILE = "encodings.json"


def record_file(folder: str | pathlib.Path, index: int) -> pathlib.Path:
    return pathlib.Path(folder) / f"{index:07d}.npz"


@runtime_checkable
class Records(Protocol):
    """What `encode_records` reads: `len(records)` and `records[i]` (a list of dicts, or a dataset source such as
    `tfds_builder.ClipSource`, which is no `Sequence`)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Mapping[str, Any]: ...


def encode_records(records: Records, pipeline: str | pathlib.Path, out: pathlib.Path, *,
                   prompts: Mapping[str, str], default_prompt: str = "", seed: int = 0) -> int:
    """Writes one `.npz` per record into the existing folder `out`; returns the count. `records` yields dicts
    with `video` uint8 `[F, H, W, 3]`, `mask` `[F, H, W]` and `name` (a dataset source: records are read one at a
    time, twice)."""
    from swapjax.encoding import ImageEncoder, TextEncoder, has_image_encoder

    count = 0
    with TextEncoder.from_pipeline(pipeline) as text:
        for i in range(len(records)):
            embedded = text.encode(prompts.get(str(records[i]["name"]), default_prompt))  # [L, D]
            nonzero = np.flatnonzero(np.abs(embedded).sum(-1))
            used = int(nonzero[-1]) + 1 if nonzero.size else 0  # tokens before the zero tail
            np.savez(record_file(out, i), text=embedded[:used])
            count += 1
    if has_image_encoder(pipeline):
        with ImageEncoder.from_pipeline(pipeline) as image:
            size = image.preprocess.crop_hw[0] if image.preprocess.crop_hw else 224
            for i in range(len(records)):
                record = records[i]
                crop = reference_crop(record["video"], record["mask"], np.random.default_rng((seed, i)), size)
                with np.load(record_file(out, i)) as saved:
                    text_part = saved["text"]
                np.savez(record_file(out, i), text=text_part, image=image.encode(crop))
    return count


def read_encoding(folder: str | pathlib.Path, index: int, text_len: int = 512) -> dict[str, np.ndarray]:
    """Record `index`'s encodings: `text` float32 `[text_len, text_dim]` (zero-padded or cut) and, if written,
    `image` `[Li, image_dim]`."""
    path = record_file(folder, index)
    if not path.is_file():
        raise InputError(f"encodings {str(path)!r} do not exist: run {PROG} for this dataset split")
    with np.load(path) as saved:
        text = saved["text"]
        out = {"text": np.zeros((text_len, text.shape[1]), np.float32)}
        out["text"][:min(text_len, len(text))] = text[:text_len]
        if "image" in saved.files:
            out["image"] = saved["image"].astype(np.float32)
    return out


def _read_prompts(path: str | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        prompts = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"--prompts {path!r} cannot be read as JSON ({err}): pass a JSON object "
                         '{"record name": "prompt", ...}') from None
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise InputError(f"--prompts {path!r} must be a JSON object from record names to prompt strings")
    return prompts


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; 0 when written, 2 for bad input, SIGTERM or Ctrl-C (one `error:` line, nothing left)."""
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", required=True, help="converted pipeline (python -m swapjax.convert --pipeline)")
    parser.add_argument("--data", required=True, help="dataset folder built by python -m swapjax.data.build")
    parser.add_argument("--out", required=True, help="output folder (must not exist)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--prompt", default="", help="prompt of records not named in --prompts")
    parser.add_argument("--prompts", help="JSON object: record name -> prompt")
    parser.add_argument("--seed", type=int, default=0, help="seed of the reference crops")
    args = parser.parse_args(argv)
    return run_main(lambda: _run(args), creates=[args.out])


def _run(args) -> int:
    out = check_output(args.out)
    prompts = _read_prompts(args.prompts)
    from swapjax.convert.pipeline import read_manifest
    from swapjax.data.tfds_builder import open_source

    read_manifest(args.pipeline)
    source = open_source(args.data, args.split)
    try:
        with atomic_write(out, replace=False, make_parents=True) as tmp:
            tmp.mkdir()
            count = encode_records(source, args.pipeline, tmp, prompts=prompts, default_prompt=args.prompt,
                                   seed=args.seed)
            (tmp / INDEX_FILE).write_text(json.dumps({"pipeline": str(args.pipeline), "data": str(args.data),
                                                      "split": args.split, "count": count, "seed": args.seed}) + "\n")
    except (Terminated, KeyboardInterrupt):
        say(f"stopped while encoding: nothing was written to {args.out!r}")
        return EXIT_BAD_INPUT
    print(f"wrote {count} encodings to {out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
