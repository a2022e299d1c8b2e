"""`DataConfig` and `MaskConfig`: where training clips come from and how training masks are drawn (read by
`data/pipeline.py` and `data/masks.py`)."""

from __future__ import annotations

import dataclasses

from swapjax.errors import require
from swapjax.data.synthetic_assets import FAMILIES

# category of the synthetic families (synthetic_assets.FAMILIES) -> the DataConfig field selecting its kinds
SYNTHETIC_FIELDS = {"background": "synthetic_backgrounds", "texture": "synthetic_textures",
                    "shape": "synthetic_shapes", "motion": "synthetic_motions", "camera": "synthetic_cameras",
                    "lighting": "synthetic_lighting"}


@dataclasses.dataclass(frozen=True)
class MaskConfig:
    """Mask transforms (pixel units; docs/design.md, "Masks")."""

    p_bbox: float = 0.3  # training: bbox mask with this probability, adaptive grid otherwise
    grid_cell_min: int = 12  # h1: training grid cell size drawn from U[h1, h2]
    grid_cell_max: int = 48  # h2
    grid_cell_infer: int = 24  # h3: inference grid cell size
    bbox_dilate_max: int = 8  # training bbox dilation drawn from [0, this]
    p_shape_aug: float = 0.5  # probability of extra shapes attached to the boundary
    shape_aug_max: int = 3  # at most this many extra shapes
    # masks as users draw them (ours): with this probability the subject is first dilated by U{1..loose_dilate_max}
    # pixels, a loose hand-drawn mask, before the bbox / grid choice; 0 = off (no draw)
    p_loose: float = 0.0
    loose_dilate_max: int = 0
    feather: int = 4  # sampling composite: feather radius in pixels
    dilate_infer: int = 4  # sampling composite: dilation before feathering
    # SwapAnyHead (head swapping; off by default): the training mask is the subject dilated by block_dilate and cut
    # into block_size x block_size pixel blocks (a block is on if any pixel is), in place of the bbox / grid choice
    blocks: bool = False
    block_dilate: int = 8  # pixels (ours: the paper gives no value)
    block_size: int = 16  # pixels per block side (ours)
    # SwapAnyHead hair enhancement (head-swapping records only: they carry `cloth` and `hair` masks, and keypoints
    # for the shoulders): the body pixels `cloth · (hair + shoulder_rect)` join the region to regenerate
    hair_enhance: bool = False
    shoulder_keypoints: tuple[int, int] = (5, 6)  # (left, right) shoulder indices in the record's keypoints (COCO)
    # SwapAnyHead's random foreground scaling: with this probability the subject is scaled by s ~ U[min, max] about
    # its box centre and pasted on the background without it (the record's `background`, else inpainted)
    p_foreground_scale: float = 0.0
    foreground_scale_min: float = 0.8  # ours: the paper gives no range
    foreground_scale_max: float = 1.25

    def __post_init__(self):
        require(0.0 <= self.p_bbox <= 1.0, f"MaskConfig.p_bbox ({self.p_bbox}) must be in [0, 1]")
        require(0 < self.grid_cell_min <= self.grid_cell_max,
                 f"MaskConfig: need 0 < grid_cell_min ({self.grid_cell_min}) <= grid_cell_max ({self.grid_cell_max})")
        require(self.grid_cell_infer > 0, f"MaskConfig.grid_cell_infer ({self.grid_cell_infer}) must be positive")
        require(0.0 <= self.p_loose <= 1.0 and self.loose_dilate_max >= 0,
                f"MaskConfig: need p_loose ({self.p_loose}) in [0, 1] and loose_dilate_max ({self.loose_dilate_max}) >= 0")
        require(self.block_dilate >= 0 and self.block_size >= 1,
                f"MaskConfig: need block_dilate ({self.block_dilate}) >= 0 and block_size ({self.block_size}) >= 1")
        require(len(self.shoulder_keypoints) == 2 and min(self.shoulder_keypoints) >= 0,
                f"MaskConfig.shoulder_keypoints ({self.shoulder_keypoints}) must be two keypoint indices >= 0")
        require(0.0 <= self.p_foreground_scale <= 1.0,
                f"MaskConfig.p_foreground_scale ({self.p_foreground_scale}) must be in [0, 1]")
        require(0 < self.foreground_scale_min <= self.foreground_scale_max,
                f"MaskConfig: need 0 < foreground_scale_min ({self.foreground_scale_min}) <= foreground_scale_max "
                f"({self.foreground_scale_max})")


class StageFromTrain(int):
    """A `DataConfig.stage` the run-level `Config` derived from `train.stage` (not set by the user): it behaves as
    the int it holds, and is derived again whenever the `Config` is rebuilt (an override of `train.stage`)."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where clips come from and what a training example looks like."""

    source: str = "synthetic"  # "synthetic" (embedded default) or "tfds" (ArrayRecord built by swapjax.data.build)
    tfds_dir: str | None = None
    height: int = 64
    width: int = 64
    num_frames: int = 5  # F, must be 1 mod 4
    frame_stride: int = 1
    ref_size: int = 64  # reference image side (square)
    batch_size: int = 2  # global batch
    num_workers: int = 0  # grain worker processes
    read_threads: int = 2  # threads per process (main or worker) transforming examples
    prefetch_batches: int = 2  # batches buffered per reading thread pool / per worker (memory: float32 batches)
    split: str = "train"  # TFDS split to read
    num_synthetic_clips: int = 1024
    # the synthetic world's families per category (synthetic_assets.FAMILIES: sprite textures, backgrounds, sprite
    # shapes, motions, cameras, lightings); None = every kind
    synthetic_textures: tuple[str, ...] | None = None
    synthetic_backgrounds: tuple[str, ...] | None = None
    synthetic_shapes: tuple[str, ...] | None = None
    synthetic_motions: tuple[str, ...] | None = None
    synthetic_cameras: tuple[str, ...] | None = None
    synthetic_lighting: tuple[str, ...] | None = None
    # families ("category:name", e.g. "shape:articulated") training never draws; the held-out source
    # (pipeline.make_source(..., split="held_out")) draws only these in their categories (docs/design.md, "Data flow")
    held_out_families: tuple[str, ...] = ()
    shuffle: bool = True
    with_condition: bool = False  # render keypoint condition frames
    # keypoints per frame in each example (`keypoints` [F, K, 3]: x, y in the example's pixels, visibility; records
    # with fewer get invisible points); 0 = no `keypoints` array (the MEAR loss's landmarks need K > 0)
    num_keypoints: int = 0
    # 2 adds reference jitter; None follows the run's train.stage ("1" -> 1, "2" -> 2, "lora" -> 1), resolved by
    # swapjax.config.Config (a DataConfig used on its own treats None as 1)
    stage: int | None = None
    mask: MaskConfig = dataclasses.field(default_factory=MaskConfig)

    def __post_init__(self):
        require(self.source in ("synthetic", "tfds"),
                 f"DataConfig.source ({self.source!r}) must be 'synthetic' or 'tfds'")
        require(self.source != "tfds" or self.tfds_dir,
                 "DataConfig.tfds_dir is required when source = 'tfds': build one with python -m swapjax.data.build")
        require(self.num_frames % 4 == 1,
                 f"DataConfig.num_frames ({self.num_frames}) must be 1 mod 4 (e.g. 5, 9, 17, 81) for the Wan VAE")
        require(self.height % 16 == 0 and self.width % 16 == 0,
                 f"DataConfig: height ({self.height}) and width ({self.width}) must be multiples of 16")
        require(self.batch_size >= 1, f"DataConfig.batch_size ({self.batch_size}) must be >= 1")
        require(self.stage in (None, 1, 2), f"DataConfig.stage ({self.stage}) must be 1, 2 or None (follow train.stage)")
        self._check_families()
        require(self.frame_stride >= 1, f"DataConfig.frame_stride ({self.frame_stride}) must be >= 1")
        require(self.num_keypoints >= 0, f"DataConfig.num_keypoints ({self.num_keypoints}) must be >= 0")
        require(self.num_workers >= 0 and self.read_threads >= 1 and self.prefetch_batches >= 1,
                 f"DataConfig: need num_workers ({self.num_workers}) >= 0, read_threads ({self.read_threads}) >= 1 "
                 f"and prefetch_batches ({self.prefetch_batches}) >= 1")

    def synthetic_kinds(self, category: str) -> tuple[str, ...]:
        """The selected kinds of a family category ("shape", ...): its `synthetic_*` field, or every kind."""
        return tuple(getattr(self, SYNTHETIC_FIELDS[category]) or FAMILIES[category])

    def held_out(self, category: str) -> tuple[str, ...]:
        """The kinds of `category` named in `held_out_families` (in their order)."""
        return tuple(name.split(":", 1)[1] for name in self.held_out_families if name.split(":", 1)[0] == category)

    def _check_families(self) -> None:
        for category, name in SYNTHETIC_FIELDS.items():
            kinds, allowed = getattr(self, name), FAMILIES[category]
            require(kinds is None or (not isinstance(kinds, str) and len(kinds) > 0 and set(kinds) <= set(allowed)),
                    f"DataConfig.{name} ({kinds}) must be None (every kind) or a non-empty subset of {allowed}")
        held = self.held_out_families
        require(not isinstance(held, str), f"DataConfig.held_out_families ({held!r}) must be a tuple of "
                "'category:name' strings, e.g. ('shape:articulated',)")
        require(not held or self.source == "synthetic", f"DataConfig.held_out_families ({held}) applies to the "
                "synthetic source only: empty it or set source = 'synthetic'")
        for family in held:
            category, _, kind = str(family).partition(":")
            require(category in FAMILIES, f"DataConfig.held_out_families: {family!r} has no known category: write "
                    f"'category:name' with category one of {tuple(FAMILIES)}")
            require(kind in FAMILIES[category], f"DataConfig.held_out_families: {family!r} is no {category} family: "
                    f"use one of {FAMILIES[category]}")
            field = SYNTHETIC_FIELDS[category]
            require(kind in self.synthetic_kinds(category), f"DataConfig.held_out_families: {family!r} is not among "
                    f"DataConfig.{field} ({getattr(self, field)}): add it there or drop it from held_out_families")
        for category, field in SYNTHETIC_FIELDS.items():
            left = set(self.synthetic_kinds(category)) - set(self.held_out(category))
            require(left, f"DataConfig.held_out_families holds out every kind of DataConfig.{field} "
                    f"({self.synthetic_kinds(category)}), so training would draw none: keep one for training")
