"""`UMT5Config`: the umT5 text encoder's architecture and how it runs (read by `models/umt5.py`).

Defaults are umT5-XXL as Wan2.1 uses it (the `text_encoder/` of a Wan diffusers export). Field names follow
transformers' `UMT5Config` where they exist; `activation` is the FFN gate's activation that transformers derives
from `feed_forward_proj` ("gated-gelu" -> "gelu_new", the tanh approximation).
"""

from __future__ import annotations

import dataclasses

from swapjax.errors import require
from swapjax.models.activations import ACTIVATION_FNS
from swapjax.models.execution import execution_field
from swapjax.models.layers import DTYPES


@dataclasses.dataclass(frozen=True)
class UMT5Config:
    """umT5 encoder: T5 v1.1 blocks (gated FFN, RMS norms, no biases) with a relative-position bias per layer."""

    vocab_size: int = 256384
    d_model: int = 4096
    d_kv: int = 64  # per-head width
    num_heads: int = 64
    d_ff: int = 10240
    num_layers: int = 24
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    activation: str = "gelu_new"
    # Execution choices (see models/execution.py).
    param_dtype: str = execution_field("float32")
    dtype: str = execution_field("float32")  # compute dtype; norms and attention softmax stay float32
    scan_layers: bool = execution_field(True)

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "d_kv", "num_heads", "d_ff", "num_layers"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, f"UMT5Config.{name} ({value!r}) must be an integer >= 1")
        require(self.relative_attention_num_buckets >= 4 and self.relative_attention_num_buckets % 4 == 0,
                f"UMT5Config.relative_attention_num_buckets ({self.relative_attention_num_buckets}) must be a "
                "multiple of 4 (half per direction, half of that exact offsets), e.g. 32")
        require(self.relative_attention_max_distance > self.relative_attention_num_buckets // 4,
                f"UMT5Config.relative_attention_max_distance ({self.relative_attention_max_distance}) must exceed "
                f"num_buckets / 4 = {self.relative_attention_num_buckets // 4}, e.g. 128")
        require(self.activation in ACTIVATION_FNS,
                f"UMT5Config.activation ({self.activation!r}) must be one of {tuple(ACTIVATION_FNS)}")
        require(self.param_dtype in DTYPES and self.dtype in DTYPES,
                f"UMT5Config: param_dtype ({self.param_dtype!r}) and dtype ({self.dtype!r}) must be in {tuple(DTYPES)}")

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv
