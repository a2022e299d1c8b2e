"""`ClipVisionConfig`: the CLIP vision transformer's architecture and how it runs (read by `models/clip_vision.py`).

Defaults are the ViT-H/14 image encoder of Wan2.1 I2V (the `image_encoder/` of a Wan diffusers export). Field names
follow transformers' `CLIPVisionConfig` where they exist (`num_layers` = `num_hidden_layers`, `num_heads` =
`num_attention_heads`). `feature_layer` picks which hidden state is the output, indexed like transformers'
`hidden_states` (0 = the embeddings after the pre-norm, k = after k layers, negative from the end); Wan reads
`hidden_states[-2]`, the penultimate layer's output.
"""

from __future__ import annotations

import dataclasses

from swapjax.errors import require
from swapjax.models.activations import ACTIVATION_FNS
from swapjax.models.attention import BACKENDS
from swapjax.models.execution import execution_field
from swapjax.models.layers import DTYPES


@dataclasses.dataclass(frozen=True)
class ClipVisionConfig:
    """Pre-norm ViT with a class token and learned position embeddings (CLIP's vision tower)."""

    hidden_size: int = 1280
    intermediate_size: int = 5120
    num_layers: int = 32
    num_heads: int = 16
    image_size: int = 224
    patch_size: int = 14
    num_channels: int = 3
    layer_norm_eps: float = 1e-5
    hidden_act: str = "gelu"
    feature_layer: int = -2
    # Execution choices (see models/execution.py).
    param_dtype: str = execution_field("float32")
    dtype: str = execution_field("float32")  # compute dtype; norms stay float32
    attention: str = execution_field("xla")
    scan_layers: bool = execution_field(True)

    def __post_init__(self):
        for name in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "image_size", "patch_size",
                     "num_channels"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1,
                    f"ClipVisionConfig.{name} ({value!r}) must be an integer >= 1")
        require(self.hidden_size % self.num_heads == 0,
                f"ClipVisionConfig.hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})")
        require(self.image_size % self.patch_size == 0,
                f"ClipVisionConfig.image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
        require(-(self.num_layers + 1) <= self.feature_layer <= self.num_layers,
                f"ClipVisionConfig.feature_layer ({self.feature_layer}) must index one of the num_layers + 1 = "
                f"{self.num_layers + 1} hidden states (-{self.num_layers + 1}..{self.num_layers}); Wan uses -2")
        require(self.hidden_act in ACTIVATION_FNS,
                f"ClipVisionConfig.hidden_act ({self.hidden_act!r}) must be one of {tuple(ACTIVATION_FNS)}")
        require(self.attention in BACKENDS,
                f"ClipVisionConfig.attention ({self.attention!r}) must be one of {BACKENDS}")
        require(self.param_dtype in DTYPES and self.dtype in DTYPES,
                f"ClipVisionConfig: param_dtype ({self.param_dtype!r}) and dtype ({self.dtype!r}) must be in "
                f"{tuple(DTYPES)}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def num_tokens(self) -> int:
        """Class token + patch tokens (257 for ViT-H/14 at 224)."""
        return 1 + (self.image_size // self.patch_size) ** 2

    @property
    def layers_run(self) -> int:
        """How many layers produce the output hidden state (`feature_layer` counted from the front)."""
        return self.feature_layer if self.feature_layer >= 0 else self.num_layers + 1 + self.feature_layer
