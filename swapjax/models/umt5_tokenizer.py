"""Prompts -> umT5 token ids and attention masks, exactly as the diffusers Wan pipelines prepare them.

    tok = PromptTokenizer.from_folder("Wan2.1-I2V-14B-480P-Diffusers/tokenizer")
    ids, mask = tok(["a cat walks on the grass", ""], max_length=512)       # int32 [B, 512] each

Each prompt is cleaned first (`clean_prompt`: mojibake and HTML entities repaired, runs of whitespace collapsed
to one space, ends stripped), then tokenised by the pipeline's own `tokenizer.json` (the `tokenizers` library,
which also adds the end-of-sequence token), cut to `max_length` tokens with the end token kept, and right-padded
with the pad token to `max_length`; the mask is 1 on tokens and 0 on padding.
"""

from __future__ import annotations

import html
import json
import pathlib
import re
from typing import Sequence

import ftfy
import numpy as np
from tokenizers import Tokenizer

from swapjax.errors import CheckpointError

TOKENIZER_FILE = "tokenizer.json"
_CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")


def clean_prompt(text: str) -> str:
    """Repairs broken Unicode (ftfy) and doubly escaped HTML entities, collapses whitespace, strips the ends."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()


def _pad_token(folder: pathlib.Path) -> str:
    """The pad token a tokenizer folder declares (`<pad>`, T5's, when none does)."""
    for name in _CONFIG_FILES:
        path = folder / name
        if path.is_file():
            try:
                value = json.loads(path.read_text()).get("pad_token")
            except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
                raise CheckpointError(f"{str(path)!r} is not a JSON object ({err}): use the file that came with the "
                                      "pipeline") from None
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                return value
    return "<pad>"


class PromptTokenizer:
    """The pipeline's umT5 tokenizer with Wan's cleaning, truncation and padding."""

    def __init__(self, tokenizer: Tokenizer, pad_id: int):
        self.tokenizer, self.pad_id = tokenizer, pad_id

    @classmethod
    def from_folder(cls, folder: str | pathlib.Path) -> "PromptTokenizer":
        """Reads `folder/tokenizer.json` (a pipeline's `tokenizer/`); a missing or unreadable file raises
        `CheckpointError` naming it."""
        folder = pathlib.Path(folder)
        path = folder / TOKENIZER_FILE
        if not path.is_file():
            raise CheckpointError(f"tokenizer {str(path)!r} does not exist: pass the pipeline's tokenizer folder "
                                  "(it must hold tokenizer.json, as diffusers exports do)")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises its own exception type; re-raise naming the file
            raise CheckpointError(f"tokenizer {str(path)!r} cannot be read ({err}): use the tokenizer.json that "
                                  "came with the pipeline") from None
        pad = _pad_token(folder)
        pad_id = tokenizer.token_to_id(pad)
        if pad_id is None:
            raise CheckpointError(f"tokenizer {str(path)!r} has no pad token {pad!r} in its vocabulary: use the "
                                  "tokenizer folder that came with the pipeline")
        return cls(tokenizer, pad_id)

    def __call__(self, prompts: Sequence[str], max_length: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, int32 `[B, max_length]` each (see the module docstring)."""
        if isinstance(prompts, str):
            raise TypeError("PromptTokenizer takes a list of prompts; wrap a single prompt as [prompt]")
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        encodings = self.tokenizer.encode_batch([clean_prompt(p) for p in prompts], add_special_tokens=True)
        ids = np.full((len(prompts), max_length), self.pad_id, np.int32)  # [B, L]
        mask = np.zeros((len(prompts), max_length), np.int32)
        for i, enc in enumerate(encodings):
            ids[i, :len(enc.ids)] = enc.ids
            mask[i, :len(enc.ids)] = 1
        return ids, mask
