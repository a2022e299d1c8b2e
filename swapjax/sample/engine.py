"""The model side of sampling: VAE encode/decode in chunks, the per-video prefix caches of every guidance branch,
and the one compiled sampling step (docs/design.md, "Sampling").

    engine = Engine(models, sample_cfg)                       # once per run: jitted functions live here
    frames = engine.generate(window, key, scales)             # one window of one video -> pixels [L, H, W, 3]

One `Engine` serves every video and every window of a run. Its step is jitted once per shape with the sampler
config and the model structure static and everything else traced (parameters, the prefix cache, the sample, the
solver history, the step index, the schedule, the guidance scales, and the per-video fused parts), so a new
step, window, video of the same shape or guidance value reuses the compiled step; `traces` counts how often
each function was traced. Guidance branches run as one batch: `[conditional; null]`, or with a separate text
scale `[null; reference only; reference + text]` (`swapjax.flow.cfg_velocity` / `two_branch_velocity`).
Null inputs are a zero reference latent (the anchor kept), the encoded negative prompt (`WindowInputs.null_text`;
zero text embeddings without one) and, for I2V-based models, zero image tokens (as many as the reference's, which
attend exactly like the model's one-zero-token null).

Under a mesh (`with jax.set_mesh(mesh):` in the entry point, parameters placed by `swapjax.parallel` rules)
the model's activation constraints shard the video tokens over `sequence` and gather keys/values, so the same
code runs sequence-parallel.
"""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array, Float
from tqdm.auto import tqdm

from swapjax import flow
from swapjax.models import vae as vae_lib
from swapjax.models.fused_inputs import agnostic_video, fuse_video_inputs, pack_mask, prefix_inputs
from swapjax.models.conditions import data_needs
from swapjax.models.image_encoder import encode_images
from swapjax.models.swap import PrefixCache, model_inputs, null_prefix, swap_prefix_cache, swap_video_step
from swapjax.parallel import state_shardings
from swapjax.sample.checkpoint import SamplingModels
from swapjax.sample import known
from swapjax.sample.config import SampleConfig


class WindowInputs(NamedTuple):
    """One window at model resolution (numpy, no batch axis); `length` frames, 1 mod 4."""

    pixels: np.ndarray  # float32 [L, H, W, 3] in [-1, 1]
    mask: np.ndarray  # float32 [L, H, W] {0, 1}: the region to regenerate (inference mask)
    condition: np.ndarray | None  # float32 [L, H, W, 3] in [-1, 1] rendered pose / landmarks
    reference: jax.Array  # [1, 1, h, w, z] normalised reference latent (`Engine.encode_image`)
    # the anchor slot's content, None for the first window: a latent frame [1, 1, h, w, z] handed over from the
    # previous window (`Generated.latents`), or one pixel frame float32 [H, W, 3] encoded on its own
    anchor: np.ndarray | jax.Array | None
    text: np.ndarray | None  # float32 [Lt, text_dim]
    conditions: dict[str, Any] | None = None  # explicit condition inputs (batch 1), e.g. DIFT "points"; they win
    image: np.ndarray | None = None  # float32 [Li, image_dim]: CLIP tokens of the reference (I2V-based models)
    null_text: np.ndarray | None = None  # float32 [Lt, text_dim]: the negative prompt's embeddings (None: zeros)
    keypoints: np.ndarray | None = None  # float32 [L, K, 3]: tracked points in model pixels (x, y, visibility)
    reference_embedding: np.ndarray | None = None  # float32 [E]: `Engine.embed_reference` of the reference


class Generated(NamedTuple):
    """One sampled window."""

    pixels: np.ndarray  # float32 [L, H, W, 3] in [-1, 1], before the composite
    latents: jax.Array  # [1, f, h, w, z] the normalised latents they were decoded from


class Engine:
    """Jitted model functions shared by every video of a run (see the module docstring)."""

    def __init__(self, models: SamplingModels, cfg: SampleConfig, *, mesh: jax.sharding.Mesh | None = None):
        self.cfg = cfg
        self.dit_cfg, self.swap, self.vae_cfg = models.config.dit, models.config.swap, models.config.vae
        self.dit_graph, self.vae_graph = models.dit_graph, models.vae_graph
        self.dit_state, self.vae_state = models.dit_state, models.vae_state
        if mesh is not None:
            self.dit_state = jax.device_put(self.dit_state, state_shardings(self.dit_state, mesh))
            self.vae_state = jax.device_put(self.vae_state, state_shardings(self.vae_state, mesh))
        sigmas, times = flow.schedule(cfg.sampler)
        self.sigmas, self.times = jnp.asarray(sigmas), jnp.asarray(times)  # [N + 1], [N]
        self.traces: collections.Counter = collections.Counter()  # traces per jitted function
        self.calls: collections.Counter = collections.Counter()  # calls per jitted function
        self.prefix_fn = jax.jit(self._prefix, static_argnames="fused_shape")
        # The sample and the solver history enter and leave the step with one fixed placement (replicated under a
        # mesh, committed to the first device without), so the first step's inputs and the later steps' (the
        # previous step's outputs) compile to the same program.
        self.placement = (jax.devices()[0] if mesh is None else
                          jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
        self.step_fn = jax.jit(self._step, out_shardings=None if mesh is None else self.placement)
        self.last_step_args: Any = None  # abstract arguments of the last step call (for memory analysis)
        self.encoder = None
        if data_needs(self.swap).reference_embedding:  # the identity condition reads E(reference), as in training
            from swapjax.encoding import load_identity_encoder

            loss = models.config.loss
            self.encoder = load_identity_encoder(loss.encoder, loss.encoder_checkpoint)
            self.embed_fn = jax.jit(lambda params, ref: encode_images(nnx.merge(self.encoder[0], params), ref))

    # ------------------------------------------------------------------------------------- VAE
    def _bar(self, iterable, desc: str, total: int):
        return tqdm(iterable, desc=desc, total=total, leave=False, disable=not self.cfg.progress)

    def encode(self, video: Float[ArrayLike, "b F H W 3"], desc: str = "encode") -> jax.Array:
        """Pixels `[B, F, H, W, 3]` in [-1, 1] -> normalised latents `[B, f, h, w, z]` (the posterior mean). Host
        (numpy) pixels stay on the host: the VAE moves them to the device one chunk at a time."""
        chunk = self.cfg.encode_chunk_frames
        total = 1 + -(-(video.shape[1] - 1) // chunk)
        means = [m for m, _ in self._bar(vae_lib.encode_chunks(self.vae_graph, self.vae_state, video,
                                                               chunk_frames=chunk), desc, total)]
        return vae_lib.normalize_latents(jnp.concatenate(means, axis=1), self.vae_cfg)

    def encode_image(self, image: Float[ArrayLike, "H W 3"]) -> jax.Array:
        """One frame `[H, W, 3]` in [-1, 1] -> normalised latent `[1, 1, h, w, z]`."""
        return self.encode(np.asarray(image, np.float32)[None, None], desc="encode image")

    def embed_reference(self, reference: Float[ArrayLike, "s s 3"]) -> np.ndarray:
        """The prepared reference square `[S, S, 3]` in [-1, 1] -> its image-encoder embedding float32 `[E]` (what
        training's `encode_batch` computes for the identity condition)."""
        if self.encoder is None:
            raise ValueError("this model has no condition that reads the reference embedding")
        return np.asarray(self.embed_fn(self.encoder[1], jnp.asarray(reference, jnp.float32)[None]))[0]

    def decode(self, z: Float[Array, "b f h w z"]) -> np.ndarray:
        """Normalised latents `[B, f, h, w, z]` -> float32 numpy pixels `[B, F, H, W, 3]` in [-1, 1]."""
        chunk = self.cfg.decode_chunk_latents
        raw = vae_lib.denormalize_latents(z, self.vae_cfg)
        total = 1 + -(-(z.shape[1] - 1) // chunk)
        parts = [np.asarray(x) for x in self._bar(vae_lib.decode_chunks(self.vae_graph, self.vae_state, raw,
                                                                        chunk_latents=chunk), "decode", total)]
        return np.concatenate(parts, axis=1)

    # ---------------------------------------------------------------------------------- the DiT
    def _prefix(self, state, prefix: jax.Array | None, context: jax.Array, arrays: dict[str, jax.Array],
                explicit: dict[str, Any], image: jax.Array | None = None, *, fused_shape: tuple[int, ...]
                ) -> PrefixCache:
        """Once per window: every branch's prefix K/V and every condition's per-video features. The model's
        inputs come from `model_inputs` as in training; `explicit` condition inputs replace the derived ones."""
        self.traces["prefix"] += 1
        branches = context.shape[0]
        repeat = lambda a: jnp.repeat(a, branches, axis=0)  # noqa: E731  (the same conditions in every branch)
        batch = {"fused": jnp.zeros((branches, *fused_shape[1:]), jnp.float32),  # only its shape is read
                 "t": jnp.zeros((branches,), jnp.float32), "context": context, "image_context": image,
                 "prefix": prefix, **jax.tree.map(repeat, arrays)}
        inputs = model_inputs(batch, self.swap)
        conditions = {**(inputs.conditions or {}), **jax.tree.map(repeat, explicit)}
        return swap_prefix_cache(self.dit_graph, state, inputs._replace(conditions=conditions or None))

    def _step(self, state, cache: PrefixCache, x: jax.Array, solver_state: Any, i: jax.Array, sigmas: jax.Array,
              times: jax.Array, scales: jax.Array, parts: dict[str, jax.Array | None]) -> tuple[jax.Array, Any]:
        """One sampler step for one video: every guidance branch in one batched model call."""
        self.traces["step"] += 1
        branches = cache.text.shape[0]
        fused = fuse_video_inputs(x, parts["mask"], parts["agnostic"], parts["condition"],
                                  condition_channels=self.swap.condition_channels)  # [1, f, h, w, C_in]
        t = jnp.full((branches,), times[i], jnp.float32)  # [nb]
        v = swap_video_step(self.dit_graph, state, cache, jnp.repeat(fused, branches, axis=0), t)  # [nb, f, h, w, z]
        if branches == 2:
            v = flow.cfg_velocity(v[:1], v[1:], scales[0])
        else:
            v = flow.two_branch_velocity(v[:1], v[1:2], v[2:], scales[0], scales[1])
        x_next, solver_state = flow.solver_step(self.cfg.sampler.solver, solver_state, x, v, i, sigmas)
        if parts.get("keep") is not None:  # known-latent reuse (sample/known.py)
            x_next = known.reuse_known(x_next, parts["source"], parts["noise"], parts["keep"], sigmas[i + 1])
        return x_next, solver_state

    def _text(self, text: np.ndarray | None) -> np.ndarray:
        """float32 `[1, text_len, text_dim]`: `text` zero-padded or cut to `text_len` (zeros for None)."""
        context = np.zeros((1, self.cfg.text_len, self.dit_cfg.text_dim), np.float32)
        if text is not None:
            n = min(len(text), self.cfg.text_len)
            context[0, :n] = text[:n]
        return context

    def _branches(self, z_ref: jax.Array, z_anchor: jax.Array | None, text: np.ndarray | None,
                  null_text: np.ndarray | None = None, image: np.ndarray | None = None
                  ) -> tuple[jax.Array | None, np.ndarray, np.ndarray | None]:
        """(prefix frames `[nb, P, h, w, C_in]` or None, text contexts `[nb, Lt, text_dim]`, image tokens
        `[nb, Li, image_dim]` or None) of the branches; the null branch reads zero image tokens."""
        swap = self.swap
        present = jnp.array([z_anchor is not None])
        z_a = jnp.zeros_like(z_ref) if z_anchor is None else z_anchor
        context, null_context = self._text(text), self._text(null_text)
        prefix = null = None
        if swap.num_prefix_frames:
            kw = dict(mask_channels=swap.frames_per_latent, condition_channels=swap.condition_channels)
            prefix = prefix_inputs(z_ref if swap.reference else None, z_a if swap.anchor else None, present, **kw)
            null = null_prefix(z_ref, swap, z_a, present)
        tokens = None if image is None else np.asarray(image, np.float32)[None]  # [1, Li, image_dim]
        no_tokens = None if image is None else np.zeros_like(tokens)
        if self.cfg.num_branches == 2:
            order = [(prefix, context, tokens), (null, null_context, no_tokens)]
        else:
            order = [(null, null_context, no_tokens), (prefix, null_context, tokens), (prefix, context, tokens)]
        prefixes = None if prefix is None else jnp.concatenate([p for p, _, _ in order], axis=0)
        images = None if image is None else np.concatenate([i for _, _, i in order], axis=0)
        return prefixes, np.concatenate([c for _, c, _ in order], axis=0), images

    def _anchor(self, anchor: np.ndarray | jax.Array | None) -> jax.Array | None:
        """The anchor slot's latent `[1, 1, h, w, z]`: handed over as is, or one pixel frame encoded alone."""
        if not self.swap.anchor or anchor is None:
            return None
        return jnp.asarray(anchor) if np.ndim(anchor) == 5 else self.encode_image(anchor)

    def condition_arrays(self, window: WindowInputs, z_condition: jax.Array | None) -> dict[str, jax.Array]:
        """The arrays the conditions read (`conditions.BATCH_KEYS`), batch 1, as training's batch holds them."""
        arrays = {"condition_latents": z_condition,
                  "keypoints": None if window.keypoints is None else jnp.asarray(window.keypoints, jnp.float32)[None],
                  "reference_embedding": None if window.reference_embedding is None else
                  jnp.asarray(window.reference_embedding, jnp.float32)[None]}
        return {k: v for k, v in arrays.items() if v is not None}

    def generate(self, window: WindowInputs, key: jax.Array, scales: Float[ArrayLike, "2"]) -> np.ndarray:
        """Samples one window: float32 numpy pixels `[L, H, W, 3]` in [-1, 1] (before the composite)."""
        return self.generate_window(window, key, scales).pixels

    def generate_window(self, window: WindowInputs, key: jax.Array, scales: Float[ArrayLike, "2"]) -> Generated:
        """Samples one window: its pixels (before the composite) and the latents they were decoded from."""
        pixels = window.pixels[None]  # [1, L, H, W, 3]
        mask = window.mask[None]  # [1, L, H, W]
        z_agnostic = self.encode(agnostic_video(pixels, mask), "encode video")
        z_condition = None if window.condition is None else self.encode(window.condition[None], "encode condition")
        prefixes, contexts, images = self._branches(window.reference, self._anchor(window.anchor), window.text,
                                                    window.null_text, window.image)
        fused_shape = (*z_agnostic.shape[:4], self.dit_cfg.in_channels)
        cache = self.prefix_fn(self.dit_state, prefixes, contexts, self.condition_arrays(window, z_condition),
                               dict(window.conditions or {}), images, fused_shape=fused_shape)
        self.calls["prefix"] += 1
        parts = {"mask": pack_mask(mask, frames_per_latent=self.swap.frames_per_latent,
                                   pixels_per_latent=self.swap.pixels_per_latent),
                 "agnostic": z_agnostic, "condition": z_condition if self.swap.condition_channels else None}
        x = jax.random.normal(key, z_agnostic.shape, jnp.float32)  # [1, f, h, w, z] pure noise at sigma = 1
        parts.update(self._known_parts(pixels, mask, x))
        x, solver_state = jax.device_put((x, flow.init_state(self.cfg.sampler.solver, x)), self.placement)
        scales = jnp.asarray(scales, jnp.float32)
        for i in self._bar(range(self.cfg.sampler.num_steps), "steps", self.cfg.sampler.num_steps):
            args = (self.dit_state, cache, x, solver_state, jnp.int32(i), self.sigmas, self.times, scales, parts)
            x, solver_state = self.step_fn(*args)
            self.calls["step"] += 1
        self.last_step_args = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a), sharding=getattr(a, "sharding", None)),
            args)
        return Generated(self.decode(x)[0], x)

    def _known_parts(self, pixels: np.ndarray, mask: np.ndarray, noise: jax.Array) -> dict[str, jax.Array]:
        """The step's extra parts for known-latent reuse (`SampleConfig.known_margin`; none when it is None):
        the source's latents, the sample's first noise and the cells to keep."""
        margin = self.cfg.known_margin
        if margin is None:
            return {}
        keep = known.keep_cells(mask, margin, frames_per_latent=self.swap.frames_per_latent,
                                pixels_per_latent=self.swap.pixels_per_latent)  # [1, f, h, w, 1]
        return {"source": self.encode(pixels, "encode source"), "noise": noise, "keep": keep}

    def step_memory(self) -> Any:
        """`memory_analysis()` of the step compiled for the last call's argument shapes."""
        return self.step_fn.lower(*self.last_step_args).compile().memory_analysis()
