"""Text and image contexts for `sample.py --pipeline`: the prompt, the negative prompt and every job's reference
encoded by the pipeline's JAX encoders before the DiT is loaded (docs/design.md, "Text and image encoders").

    contexts = encode_contexts("converted/", jobs, read_reference, prompt="a tabby cat", negative_prompt="",
                               text_len=512, dit_cfg=config.dit)
    inputs, extra = contexts.apply(job, inputs)    # inputs.text filled; extra = {image_context, null_text}
    swap_video(engine, inputs, ..., **extra)

The text encoder runs once per distinct prompt (the empty negative prompt once per run) and the image encoder
once per job; each is released before the next loads, and both before the DiT's steps. A job with its own
`text` embeddings (`--text`, a job's "text") keeps them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from swapjax.errors import CheckpointError
from swapjax.encoding import ImageEncoder, TextEncoder
from swapjax.models.dit_config import DiTConfig
from swapjax.sample.inputs import JobInputs


@dataclasses.dataclass(frozen=True)
class Contexts:
    """Encoded contexts of a run: the prompt's and the negative prompt's embeddings, and each job's image tokens."""

    prompt: np.ndarray | None  # float32 [Lt, text_dim] (None: no prompt given)
    null_text: np.ndarray  # float32 [Lt, text_dim]: the negative prompt (the empty prompt by default)
    images: dict[str, np.ndarray]  # job name -> float32 [Li, image_dim] CLIP tokens of its reference

    def apply(self, job: Any, inputs: JobInputs) -> tuple[JobInputs, dict[str, Any]]:
        """The job's inputs with the prompt's embeddings (unless it has its own) and `swap_video`'s extra kwargs."""
        if inputs.text is None and self.prompt is not None:
            inputs = dataclasses.replace(inputs, text=self.prompt)
        return inputs, {"image_context": self.images.get(job.name), "null_text": self.null_text}


def encode_contexts(pipeline: str, jobs: Sequence[Any], read_reference: Callable[[Any], np.ndarray], *,
                    prompt: str | None, negative_prompt: str, text_len: int, dit_cfg: DiTConfig) -> Contexts:
    """Runs the text encoder, releases it, then (I2V-based DiTs) the image encoder on every job's reference.

    `read_reference(job)` returns the job's reference as uint8 `[H, W, 3]`. Raises `CheckpointError` when an
    encoder's width does not match what the DiT reads."""
    with TextEncoder.from_pipeline(pipeline, max_length=text_len) as text:
        if text.cfg.d_model != dit_cfg.text_dim:
            raise CheckpointError(f"--pipeline {pipeline!r}: its text encoder gives width {text.cfg.d_model} but the "
                                  f"swap model reads text_dim = {dit_cfg.text_dim}: use the pipeline the model was "
                                  "converted from")
        embedded = None if prompt is None else text.encode(prompt)
        null = text.encode(negative_prompt)
    images: dict[str, np.ndarray] = {}
    if dit_cfg.is_i2v:
        with ImageEncoder.from_pipeline(pipeline) as image:
            if image.cfg.hidden_size != dit_cfg.image_dim:
                raise CheckpointError(f"--pipeline {pipeline!r}: its image encoder gives width {image.cfg.hidden_size}"
                                      f" but the swap model reads image_dim = {dit_cfg.image_dim}: use the pipeline "
                                      "the model was converted from")
            for job in jobs:
                images[job.name] = image.encode(read_reference(job))
    return Contexts(embedded, null, images)
