"""`OptimizerConfig` and `TrainConfig`: how a run trains (read by `swapjax/train/`).

Both are sections of the run-level `Config` (`config.optimizer`, `config.train`), set from a `configs/*.py`
file and from dotted overrides such as `train.steps=20` or `optimizer.lr=3e-4` (docs/design.md, "Training").
"""

from __future__ import annotations

import dataclasses
import math

from swapjax.errors import require

STAGES = ("1", "2", "lora")
# Stage 1 trains these (path prefixes of the parameter tree, "/"-joined): the self-attention of every block, the
# widened patch embedding and the swap model's new modules (condition branches); everything else is frozen.
STAGE1_TRAINABLE = ("patch_embed", "blocks/self_attn")  # + every enabled condition's module (derived, loop.py)
# LoRA adapts these kernels (path suffixes): the attention and FFN projections of every block.
LORA_TARGETS = ("self_attn/q", "self_attn/k", "self_attn/v", "self_attn/o", "cross_attn/q", "cross_attn/k",
                "cross_attn/v", "cross_attn/o", "ffn/fc1", "ffn/fc2")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with linear warmup then cosine decay, global-norm clipping and an EMA of the trained weights."""

    lr: float = 1e-4  # peak learning rate
    warmup_steps: int = 0  # linear warmup from 0 to `lr`
    decay_steps: int | None = None  # cosine decay length after warmup; None = the rest of `train.steps`
    end_lr_fraction: float = 0.0  # the cosine ends at lr * this
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float = 1.0  # global gradient-norm clip over the trained parameters; 0 = off
    ema_decay: float = 0.999  # EMA of the trained parameters (exported for inference); 0 = no EMA

    def __post_init__(self):
        require(math.isfinite(self.lr) and self.lr > 0, f"OptimizerConfig.lr ({self.lr}) must be a positive number")
        require(self.warmup_steps >= 0, f"OptimizerConfig.warmup_steps ({self.warmup_steps}) must be >= 0")
        require(self.decay_steps is None or self.decay_steps >= 1,
                f"OptimizerConfig.decay_steps ({self.decay_steps}) must be >= 1, or None for the rest of the run")
        require(0.0 <= self.end_lr_fraction <= 1.0,
                f"OptimizerConfig.end_lr_fraction ({self.end_lr_fraction}) must be in [0, 1]")
        require(0.0 <= self.b1 < 1.0 and 0.0 <= self.b2 < 1.0 and self.eps > 0,
                f"OptimizerConfig: b1 ({self.b1}) and b2 ({self.b2}) must be in [0, 1) and eps ({self.eps}) > 0")
        require(self.weight_decay >= 0 and self.clip_norm >= 0,
                f"OptimizerConfig: weight_decay ({self.weight_decay}) and clip_norm ({self.clip_norm}) must be >= 0")
        require(0.0 <= self.ema_decay < 1.0, f"OptimizerConfig.ema_decay ({self.ema_decay}) must be in [0, 1) "
                "(0 turns the EMA off)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run: length, stage, checkpoints, robustness and the from-scratch VAE stage."""

    steps: int = 1000  # optimizer steps of the DiT stage (each sees one global batch)
    stage: str = "1"  # "1": self-attention + new layers; "2": everything; "lora": low-rank adapters only
    stage1_trainable: tuple[str, ...] = STAGE1_TRAINABLE
    lora_rank: int = 16
    lora_alpha: float = 16.0  # adapters scale by lora_alpha / lora_rank
    lora_targets: tuple[str, ...] = LORA_TARGETS
    grad_accum: int = 1  # micro-batches per step (the global batch is split; the loss is their mean)
    checkpoint_every: int = 500  # async checkpoint every N steps (and at the end, and on SIGTERM)
    keep_checkpoints: int = 3
    max_nonfinite_steps: int = 10  # K: this many non-finite steps in a row stop the run
    log_every: int = 1  # metrics to JSONL / TensorBoard every N steps
    init_from: str | None = None  # a training workdir (e.g. stage 1's) or a converted model dir
    t_distribution: str = "uniform"  # training times: "uniform" or "logit_normal" u, then the shift (flow.py)
    t_shift: float = 1.0
    t_mean: float = 0.0  # logit-normal mean and std
    t_std: float = 1.0
    data_shards: int | None = None  # data shards (None: one per process); fixed, the batches ignore the process count
    text_len: int = 1  # zero text tokens fed when the data has no text embeddings
    anchor_drop: float = 0.5  # probability of an absent anchor frame (swap models with an anchor slot)
    # guidance: the branches the sampler subtracts are trained ones: reference_drop of the samples get its null
    # branch (a zero reference latent, no image tokens, the null text), text_drop of the rest the null text alone
    # (the text-guidance branch of sample.text_guidance_scale)
    reference_drop: float = 0.1
    text_drop: float = 0.1
    # a folder of per-record text / image encodings (python -m swapjax.data.encode) fed as the context and, for
    # I2V-based models, the reference's image tokens; None = the null text and no image tokens
    encodings: str | None = None
    # a latent cache folder (python -m swapjax.train.cache_cli; format in swapjax/train/latent_cache.py): no VAE encoder
    latent_cache: str | None = None
    export_dtype: str = "bfloat16"  # parameter dtype of the inference export
    progress: bool = True  # tqdm progress bar (process 0)
    # VAE stage (from scratch, or fine-tuning a loaded Wan VAE): runs first when vae_steps > 0.
    vae_steps: int = 0
    vae_init: str | None = None  # a converted VAE dir to fine-tune (or to use frozen when vae_steps = 0)
    vae_lr: float = 1e-4
    vae_kl_weight: float = 1e-6
    vae_stat_batches: int = 4  # batches whose latents set the trained VAE's latents_mean / latents_std

    def __post_init__(self):
        require(self.steps >= 1, f"TrainConfig.steps ({self.steps}) must be >= 1")
        require(self.stage in STAGES, f"TrainConfig.stage ({self.stage!r}) must be one of {STAGES}")
        require(self.lora_rank >= 1 and self.lora_alpha > 0,
                f"TrainConfig: lora_rank ({self.lora_rank}) must be >= 1 and lora_alpha ({self.lora_alpha}) > 0")
        require(len(self.lora_targets) >= 1, "TrainConfig.lora_targets is empty: name at least one projection, "
                f"e.g. {LORA_TARGETS[:2]}")
        require(self.grad_accum >= 1, f"TrainConfig.grad_accum ({self.grad_accum}) must be >= 1")
        require(self.checkpoint_every >= 1 and self.keep_checkpoints >= 1,
                f"TrainConfig: checkpoint_every ({self.checkpoint_every}) and keep_checkpoints "
                f"({self.keep_checkpoints}) must be >= 1")
        require(self.max_nonfinite_steps >= 1,
                f"TrainConfig.max_nonfinite_steps ({self.max_nonfinite_steps}) must be >= 1")
        require(self.log_every >= 1, f"TrainConfig.log_every ({self.log_every}) must be >= 1")
        require(self.t_distribution in ("uniform", "logit_normal"),
                f"TrainConfig.t_distribution ({self.t_distribution!r}) must be 'uniform' or 'logit_normal'")
        require(math.isfinite(self.t_shift) and self.t_shift > 0 and self.t_std > 0,
                f"TrainConfig: t_shift ({self.t_shift}) and t_std ({self.t_std}) must be positive")
        require(self.data_shards is None or self.data_shards >= 1,
                f"TrainConfig.data_shards ({self.data_shards}) must be >= 1, or None for one per process")
        require(self.text_len >= 1, f"TrainConfig.text_len ({self.text_len}) must be >= 1")
        for name in ("anchor_drop", "reference_drop", "text_drop"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, f"TrainConfig.{name} ({value}) must be in [0, 1]")
        require(self.export_dtype in ("float32", "bfloat16"),
                f"TrainConfig.export_dtype ({self.export_dtype!r}) must be 'float32' or 'bfloat16'")
        require(self.vae_steps >= 0 and self.vae_stat_batches >= 1,
                f"TrainConfig: vae_steps ({self.vae_steps}) must be >= 0 and vae_stat_batches "
                f"({self.vae_stat_batches}) >= 1")
        require(self.vae_lr > 0 and self.vae_kl_weight >= 0,
                f"TrainConfig: vae_lr ({self.vae_lr}) must be > 0 and vae_kl_weight ({self.vae_kl_weight}) >= 0")
