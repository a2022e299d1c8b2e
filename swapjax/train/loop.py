"""`train(config, workdir)`: the whole training run (docs/design.md, "Training").

1. Multi-process environments start `jax.distributed` (`hosts.initialize_distributed`).
2. Everything is validated before anything compiles (`validate`): one `ConfigError` naming the values.
3. The mesh comes from `config.mesh`; the run happens inside `jax.set_mesh(mesh)` so the model's activation
   constraints apply.
4. VAE stage (when `train.vae_steps > 0`, `vae_stage.py`), or the VAE the DiT encodes with is loaded.
5. DiT stage: a `trainer.Stage` spec (`dit_stage`) that the one trainer runs: the state starts from resume ->
   init-from -> scratch (`trainer.initial_state`, `checkpoint.py`), the step loop runs with its hooks
   (`trainer.py`, `hooks.py`), and a finished run writes the inference export (EMA, `train.export_dtype`) to
   `WORKDIR/export` and the diffusers-layout backbone to `WORKDIR/diffusers`. Batches come from the pixel
   pipeline through the VAE encoder, or from `train.latent_cache` (`latent_cache.py`, no encoder in the loop).
   Loss terms that decode x̂0 get the VAE and the image encoder as the step's `frozen` argument
   (`pixel_terms.py`); without them the step holds no VAE at all.

Stages: "1" trains the parameters under `train.stage1_trainable` plus every swap condition module (the rest
frozen, with no optimizer state); "2" trains everything and normally starts from stage 1 with
`train.init_from=<stage 1 workdir>`; "lora" trains low-rank adapters only (`lora.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import tempfile
from typing import Callable, NamedTuple

import jax
import optax
from flax import nnx

from swapjax.config import Config
from swapjax.entry import Outcome, Status
from swapjax.errors import ConfigError, require
from swapjax.losses import LossConfig
from swapjax.models.fused_inputs import anchor_index
from swapjax.models.conditions import data_needs, needed_batch_keys, settings
from swapjax.models.dit import abstract_dit
from swapjax.models.image_encoder import IMAGE_ENCODERS
from swapjax.models.swap import SwapDiT, abstract_swap
from swapjax.parallel import LOGICAL_AXIS_RULES, make_mesh, state_shardings
from swapjax.train.data import ENCODING_KEYS, EncodedBatches, ShardedBatches
from swapjax.train.checkpoint import load_params
from swapjax.train.export import export_diffusers, export_inference, inference_params
from swapjax.train.hosts import initialize_distributed
from swapjax.train.lora import init_lora, lora_shardings
from swapjax.train.latent_cache import CacheIndex, cache_iterator_factory, vae_fingerprint
from swapjax.train.objective import swap_objective
from swapjax.train.pixel_terms import FrozenModels, check_pixel_terms, decodes, load_image_encoder, pixel_keys
from swapjax.train.prepare import LATENT_KEYS, PIXEL_KEYS, PrepareConfig, assemble_batch, encode_batch
from swapjax.train.state import (StatePlan, TrainState, count, make_optimizer, new_state, plan_state, replicated,
                                 select, trainable_labels)
from swapjax.train.step import make_train_step
from swapjax.train.trainer import Feed, InitFrom, Stage, run_stage
from swapjax.train.vae_stage import VAE, load_vae, run_vae_stage
from swapjax.train.writers import log


def loss_config(config: Config) -> LossConfig:
    """The run's `LossConfig` (`config.loss`)."""
    return config.loss


def cache_keys(config: Config) -> tuple[str, ...]:
    """The latent-cache arrays a run reads: the encoded batch and the pixels its loss terms need."""
    conditions = tuple(k for k in needed_batch_keys(config.swap) if k in PIXEL_KEYS) if config.swap else ()
    return tuple(dict.fromkeys(LATENT_KEYS + (("condition_latents",) if config.data.with_condition else ())
                               + pixel_keys(config.loss) + conditions))


def validate_conditions(config: Config) -> None:
    """The enabled conditions, the anchor and the data agree (raises `ConfigError` naming the values)."""
    require(not config.data.with_condition or config.swap.condition_channels in (0, config.vae.z_dim),
            f"DataConfig.with_condition feeds the condition video's latent to the fused input: "
            f"SwapConfig.condition_channels ({config.swap.condition_channels}) must be VAEConfig.z_dim "
            f"({config.vae.z_dim}), or 0 to feed it only to the conditions that read it")
    if "pose" in config.swap.conditions:
        channels = settings(config.swap, "pose").channels
        require(channels == config.vae.z_dim, f"swap.conditions.pose.channels ({channels}) must be VAEConfig.z_dim "
                f"({config.vae.z_dim}): the pose guider reads the condition video's latent")
    anchor = prepare_config(config).anchor_index  # the anchor's latent frame must exist in a training clip
    latent_frames = (config.data.num_frames - 1) // config.swap.frames_per_latent + 1
    require(anchor < latent_frames, f"sample.overlap_frames ({config.sample.overlap_frames}) puts the anchor on latent "
            f"frame {anchor}, but training clips of data.num_frames = {config.data.num_frames} have {latent_frames} "
            "latent frames: lower sample.overlap_frames or train on longer clips")
    if data_needs(config.swap).reference_embedding:
        encoder_cfg = IMAGE_ENCODERS[config.loss.encoder].config()
        dim = getattr(encoder_cfg, "embed_dim", getattr(encoder_cfg, "num_features", None))
        given = settings(config.swap, "identity").dim
        require(given == dim, f"swap.conditions.identity.dim ({given}) must equal the embedding width of loss.encoder "
                f"= {config.loss.encoder!r} ({dim}), which embeds the reference for the identity token: set "
                f"swap.conditions.identity.dim={dim}")
    require(config.train.latent_cache is None or not data_needs(config.swap).reference_embedding,
            "train.latent_cache holds no reference embeddings, which the identity condition reads: unset "
            "train.latent_cache for this model (the encoder then runs in batch preparation)")


def validate(config: Config, workdir: pathlib.Path) -> None:
    """Checks the run against the devices, the data and the files it names; raises `ConfigError`."""
    train, data = config.train, config.data
    require(config.swap is not None, f"config {config.name!r} has no swap model (Config.swap is None): training "
            "needs one; start from configs/swap_tiny.py")
    check_pixel_terms(loss_config(config), data)
    sizes = dict(zip(("data", "fsdp", "tensor", "sequence"), config.mesh.resolve(jax.device_count())))
    shards = sizes["data"] * sizes["fsdp"]
    require(data.batch_size % (shards * train.grad_accum) == 0,
            f"DataConfig.batch_size ({data.batch_size}) must be a multiple of mesh data x fsdp ({sizes['data']} x "
            f"{sizes['fsdp']}) x train.grad_accum ({train.grad_accum}) = {shards * train.grad_accum}: change the "
            "batch size, the mesh or grad_accum")
    shards = train.data_shards or jax.process_count()
    require(data.batch_size % shards == 0 and shards % jax.process_count() == 0,
            f"DataConfig.batch_size ({data.batch_size}) must be divisible by the data shards ({shards}), and they "
            f"by the {jax.process_count()} processes: change the batch size or train.data_shards")
    s = config.swap.pixels_per_latent
    _, ph, pw = config.dit.patch_size
    require(data.height % (s * ph) == 0 and data.width % (s * pw) == 0,
            f"DataConfig: height x width ({data.height} x {data.width}) must be multiples of {s * ph} x {s * pw} "
            f"(VAE factor {s} x patch size {(ph, pw)})")
    validate_conditions(config)
    for name in ("init_from", "vae_init", "latent_cache", "encodings"):
        path = getattr(train, name)
        require(path is None or pathlib.Path(path).exists(),
                f"train.{name} = {path!r} does not exist: pass an existing folder, or None")
    # Stage 1 and LoRA keep the output head frozen, and a fresh model's head is zero: from scratch the output is
    # 0 whatever the inputs and nothing trains. Resuming such a run (WORKDIR/checkpoints has a complete step:
    # Orbax renames a step's folder to its number once written) is fine. Checked before the workdir is created.
    checkpoints = workdir / "checkpoints"
    resumes = checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())
    require(train.stage == "2" or train.init_from is not None or resumes,
            f"train.stage = {train.stage!r} from scratch trains nothing (the output head proj_out starts at zero and "
            "is frozen in this stage): use train.stage=2 to train from scratch, or pass train.init_from=<a "
            "converted I2V model or a stage-1/stage-2 workdir>")
    checkpoint = config.loss.encoder_checkpoint
    require(checkpoint is None or pathlib.Path(checkpoint).is_file(),
            f"loss.encoder_checkpoint = {checkpoint!r} is not a file: pass insightface IResNet weights (.safetensors)")
    if train.latent_cache is not None:
        CacheIndex.read(train.latent_cache).check(data, cache_keys(config))
    require(data.source != "tfds" or pathlib.Path(data.tfds_dir).is_dir(),
            f"DataConfig.tfds_dir = {data.tfds_dir!r} is not a folder: build one with python -m swapjax.data.build")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=workdir).close()  # writable by this user (a read-only existing folder too)
    except OSError as err:
        raise ConfigError(f"workdir {str(workdir)!r} cannot be created or written ({err.strerror}): pass a "
                          "writable folder") from None


def prepare_config(config: Config) -> PrepareConfig:
    """What batch preparation reads of the run config (static under jit)."""
    train, swap = config.train, config.swap
    anchor = anchor_index(config.sample.overlap_frames, swap.frames_per_latent) if swap.anchor else 0
    return PrepareConfig(swap=swap, text_len=train.text_len, text_dim=config.dit.text_dim,
                         anchor_drop=train.anchor_drop, t_distribution=train.t_distribution, t_shift=train.t_shift,
                         t_mean=train.t_mean, t_std=train.t_std, with_condition=config.data.with_condition,
                         anchor_index=anchor, reference_drop=train.reference_drop, text_drop=train.text_drop)


def with_condition_data(config: Config) -> Config:
    """`config` whose data renders what its enabled conditions read (`conditions.data_needs`): the condition video
    for a condition reading its latent, at least `num_points` keypoints for one reading keypoints."""
    if config.swap is None:
        return config
    needs, data = data_needs(config.swap), config.data
    changes = {}
    if needs.condition_video and not data.with_condition:
        changes["with_condition"] = True
    if needs.keypoints > data.num_keypoints:
        changes["num_keypoints"] = needs.keypoints
    return dataclasses.replace(config, data=dataclasses.replace(data, **changes)) if changes else config


def batch_preparation(config: Config, vae_graphdef: nnx.GraphDef, vae_cfg, vae_params: dict,
                      mesh: jax.sharding.Mesh) -> tuple[Callable, dict | None]:
    """`(prepare(args, data_batch, rng, step) -> model batch, args)`: pixels -> VAE encode (and the reference's
    image embedding when a condition reads it) -> `assemble_batch`; from a latent cache, `assemble_batch` alone."""
    prep_cfg, loss = prepare_config(config), loss_config(config)
    if config.train.latent_cache is not None:
        return (lambda args, latents, rng, step: assemble_batch(latents, rng, step, cfg=prep_cfg)), None
    identity = load_image_encoder(loss, replicated(mesh)) if data_needs(config.swap).reference_embedding else None
    encode = functools.partial(encode_batch, vae_graphdef, vae=vae_cfg, swap=config.swap,
                               with_condition=config.data.with_condition,
                               encoder_graphdef=None if identity is None else identity[0])
    # pixel arrays the loss terms and the conditions read, handed to the step
    passed = tuple(dict.fromkeys(pixel_keys(loss) + tuple(k for k in needed_batch_keys(config.swap) if k in PIXEL_KEYS)))

    def prepare(args, pixels, rng, step):  # pixels -> VAE encode -> model inputs
        latents = {**encode(args["vae"], pixels, encoder_params=args["encoder"]), **{k: pixels[k] for k in passed}}
        return assemble_batch(latents, rng, step, cfg=prep_cfg)

    return prepare, {"vae": vae_params, "encoder": None if identity is None else identity[1]}


def stage1_prefixes(config: Config) -> tuple[str, ...]:
    """Stage-1 trainable path prefixes: the configured ones plus every swap condition module."""
    swap_keys = set(nnx.to_pure_dict(abstract_swap(config.dit, config.swap)[1]))
    base_keys = set(nnx.to_pure_dict(abstract_dit(config.dit)[1]))
    return tuple(config.train.stage1_trainable) + tuple(sorted(swap_keys - base_keys))


class DiTSetup(NamedTuple):
    """What the DiT stage is built from (also what tests drive directly)."""

    graphdef: nnx.GraphDef
    abstract_model: dict  # the model's pure parameter dict of ShapeDtypeStructs
    model_shardings: dict
    labels: dict  # "train" / "frozen" per leaf of the params {"model", "lora"?}
    tx: optax.GradientTransformation
    plan: StatePlan  # abstract state, shardings, create(seed)
    step: Callable  # the pure train step
    lora_scale: float
    with_adapters: Callable[[dict, jax.Array], dict]  # model params, key -> the params dict (adapters added)


def build_dit(config: Config, mesh: jax.sharding.Mesh, frozen_models: FrozenModels | None = None) -> DiTSetup:
    """The swap DiT's labels, optimizer, state plan and train step for `config` on `mesh` (nothing allocated).
    `frozen_models`: the VAE and image encoder structure, needed when a loss term decodes (`pixel_terms`)."""
    train, opt = config.train, config.optimizer
    graphdef, abstract = abstract_swap(config.dit, config.swap)
    model_sh = nnx.to_pure_dict(state_shardings(abstract, mesh))
    lora = train.stage == "lora"
    make_model = lambda key: nnx.to_pure_dict(nnx.split(SwapDiT(config.dit, config.swap, rngs=nnx.Rngs(params=key)))[1])

    def with_adapters(model: dict, key: jax.Array) -> dict:
        return {"model": model, **({"lora": init_lora(key, model, train.lora_targets, train.lora_rank)} if lora else {})}

    def init_params(key: jax.Array) -> dict:
        k_model, k_lora = jax.random.split(key)
        return with_adapters(make_model(k_model), k_lora)

    abstract_params = jax.eval_shape(init_params, jax.random.key(0))
    param_sh = {"model": model_sh}
    if lora:
        param_sh["lora"] = lora_shardings(abstract_params["lora"], model_sh)
    labels = trainable_labels(abstract_params, train.stage, stage1_prefixes(config))
    tx = make_optimizer(opt, train.steps, labels)
    plan = plan_state(init_params, tx, labels, param_sh, mesh, ema=opt.ema_decay > 0)
    lora_scale = train.lora_alpha / train.lora_rank
    objective = swap_objective(graphdef, loss_config(config), config.swap, frozen_models)
    step = make_train_step(objective, tx, labels, ema_decay=opt.ema_decay, grad_accum=train.grad_accum,
                           lora_scale=lora_scale)
    return DiTSetup(graphdef, nnx.to_pure_dict(abstract), model_sh, labels, tx, plan, step, lora_scale,
                    with_adapters)


def _frozen(config: Config, mesh: jax.sharding.Mesh, vae: VAE) -> tuple[FrozenModels | None, dict | None]:
    """The models a loss term decoding x̂0 runs inside the step (`pixel_terms.py`) and their parameters, the
    step's `frozen` argument; (None, None) when no term decodes (the step then holds no VAE at all)."""
    if not decodes(loss_config(config)):
        return None, None
    encoder_graphdef, encoder_params = load_image_encoder(loss_config(config), replicated(mesh))
    return FrozenModels(vae.graphdef, vae.cfg, encoder_graphdef), {"vae": vae.params, "encoder": encoder_params}


def dit_feed(config: Config, mesh: jax.sharding.Mesh, vae: VAE) -> tuple[Feed, tuple[str, ...]]:
    """The DiT stage's batches: the pixel pipeline (encoded by `vae` in preparation) or `train.latent_cache`,
    plus the records' encodings when `train.encodings` names them; and the lines that say so."""
    train, notes = config.train, ()
    if train.latent_cache is not None:
        cache = CacheIndex.read(train.latent_cache)
        require(cache.vae_fingerprint == vae_fingerprint(vae.params),
                f"latent cache {train.latent_cache!r} was encoded by another VAE than the one this run loads "
                "(WORKDIR/vae, else train.vae_init, else the seed's random VAE): rebuild it with --vae naming that "
                "VAE, or unset train.latent_cache")
        keys = cache_keys(config)
        data = ShardedBatches(config.data, config.seed, train.data_shards,
                              make=cache_iterator_factory(cache.folder, keys))
        notes += (f"dit stage: reading latents from {cache.folder} ({cache.draws} draw(s) of {cache.records} "
                  "records); the VAE encoder does not run",)
    else:
        keys, data = PIXEL_KEYS, ShardedBatches(config.data, config.seed, train.data_shards)
    if train.encodings is not None:  # the records' text (and, for I2V-based models, image) encodings
        data, keys = EncodedBatches(data, train.encodings, train.text_len), keys + ENCODING_KEYS
    elif config.dit.is_i2v:
        notes += ("dit stage: an I2V-based model trained without train.encodings reads the null image tokens; "
                  "sample it without the pipeline's image tokens, or build encodings (python -m swapjax.data.encode) "
                  "to train with them",)
    prepare, args = batch_preparation(config, vae.graphdef, vae.cfg, vae.params, mesh)
    return Feed(data, keys, prepare, args), notes


def dit_init_from(config: Config, setup: DiTSetup) -> InitFrom | None:
    """`train.init_from`'s model parameters (a workdir or a converted model) under a fresh optimizer, EMA and
    data position; None without one."""
    path = config.train.init_from
    if path is None:
        return None

    def build(model: dict, seed_key: jax.Array) -> TrainState:
        k_params, k_run = jax.random.split(seed_key)
        return new_state(setup.with_adapters(model, jax.random.split(k_params)[1]), setup.tx, setup.labels,
                         jax.random.key_data(k_run), ema=config.optimizer.ema_decay > 0)

    def start() -> TrainState:
        model = load_params(path, setup.abstract_model, setup.model_shardings)
        key = jax.random.split(jax.random.key(config.seed))[0]
        return jax.jit(build, out_shardings=setup.plan.shardings)(model, key)

    return InitFrom(start, f"parameters from {path}; optimizer, EMA and data start fresh")


def dit_export(config: Config, workdir: pathlib.Path, lora_scale: float) -> Callable[[TrainState], None]:
    """What a finished DiT stage writes (once): the inference export (EMA, `train.export_dtype`) to
    `WORKDIR/export` and the diffusers-layout backbone to `WORKDIR/diffusers`."""
    export, diffusers = workdir / "export", workdir / "diffusers"

    def write(state: TrainState) -> None:
        if export.exists():
            return
        params = inference_params(state, lora_scale)
        export_diffusers(diffusers, params, config.dit)
        if jax.process_count() == 1:
            export_inference(export, params, config.dit, config.swap, config.train.export_dtype)
            log(f"dit stage: wrote the inference export {export} and the diffusers export {diffusers}")
        else:  # the converted format's writer is single-process; the checkpoint holds the EMA weights
            log(f"dit stage: wrote the diffusers export {diffusers}; the inference export is written by "
                "single-process runs (the latest checkpoint holds the same EMA weights)")

    return write


def dit_stage(config: Config, workdir: pathlib.Path, mesh: jax.sharding.Mesh, vae: VAE,
              about: tuple[str, ...] = ()) -> Outcome:
    """The swap DiT stage (module docstring, step 5) as a `Stage` for the trainer; `about`: lines to log first."""
    frozen_models, frozen = _frozen(config, mesh, vae)
    setup = build_dit(config, mesh, frozen_models)
    plan, name = setup.plan, f"dit stage {config.train.stage}"
    feed, notes = dit_feed(config, mesh, vae)
    trained = count(select(plan.abstract.params, setup.labels))
    about = (*about, f"{name}: {count(plan.abstract.params):,} parameters, {trained:,} trained; optimizer state "
             f"{count(plan.abstract.opt_state):,} scalars", *notes)
    stage = Stage(name=name, plan=plan, step=setup.step, feed=feed, total=config.train.steps, about=about,
                  checkpoints=workdir / "checkpoints", workdir=workdir, init_from=dit_init_from(config, setup),
                  frozen=frozen, export=dit_export(config, workdir, setup.lora_scale))
    return run_stage(stage, config, mesh)[1]


def train(config: Config, workdir: str | pathlib.Path) -> Outcome:
    """Runs the VAE stage (if configured) and the swap DiT stage in `workdir`; returns how the run ended."""
    initialize_distributed()
    workdir = pathlib.Path(workdir).absolute()
    config = with_condition_data(config)
    validate(config, workdir)
    mesh = make_mesh(config.mesh)
    about = (f"{config.name}: {jax.process_count()} process(es), {jax.device_count()} device(s), mesh "
             f"{dict(mesh.shape)}, workdir {workdir}",)  # logged by the first stage, once it has started
    with jax.set_mesh(mesh), nnx.logical_axis_rules(LOGICAL_AXIS_RULES):  # abstract models resolve their axes
        if config.train.vae_steps > 0:
            outcome, about = run_vae_stage(config, workdir, mesh, about), ()
            if outcome.status != Status.DONE:
                return outcome
        return dit_stage(config, workdir, mesh, load_vae(config, workdir, mesh), about)
