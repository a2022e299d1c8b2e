"""grain pipeline: determinism, exact resume (with and without workers), disjoint shards, example contents."""

from __future__ import annotations

import numpy as np
import pytest

from media_fixtures import box_mask
from swapjax.errors import ConfigError
from swapjax.data.config import DataConfig, MaskConfig
from swapjax.data import pipeline

KEYS = ("video", "mask", "subject_mask", "agnostic", "reference", "condition", "record_index")
SMALL_CELLS = MaskConfig(grid_cell_min=4, grid_cell_max=12, grid_cell_infer=6, bbox_dilate_max=2)


def _cfg(**changes) -> DataConfig:
    base = dict(height=32, width=32, num_frames=5, ref_size=16, batch_size=2, num_synthetic_clips=12,
                mask=SMALL_CELLS)
    return DataConfig(**{**base, **changes})


def _take(it, n: int) -> list[dict]:
    return [next(it) for _ in range(n)]


def _assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert set(x) == set(y) == set(KEYS)
        for k in KEYS:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_batches_have_the_documented_layout():
    cfg = _cfg(with_condition=True)
    batch = next(pipeline.make_iterator(cfg, seed=0, shard_index=0, shard_count=1))
    assert batch["video"].shape == (2, 5, 32, 32, 3) and batch["video"].dtype == np.float32
    assert batch["mask"].shape == batch["subject_mask"].shape == (2, 5, 32, 32)
    assert batch["reference"].shape == (2, 16, 16, 3) and batch["record_index"].dtype == np.int32
    assert batch["condition"].shape == batch["agnostic"].shape == batch["video"].shape
    assert -1.0 <= batch["video"].min() and batch["video"].max() <= 1.0
    assert set(np.unique(batch["mask"])) <= {0.0, 1.0} and set(np.unique(batch["subject_mask"])) <= {0.0, 1.0}
    assert (batch["mask"] >= batch["subject_mask"]).all()  # the training mask covers the subject
    np.testing.assert_array_equal(batch["agnostic"], batch["video"] * (1.0 - batch["mask"][..., None]))
    assert (batch["condition"] > -1.0).any()  # keypoints were drawn
    off = next(pipeline.make_iterator(_cfg(), seed=0, shard_index=0, shard_count=1))
    assert (off["condition"] == 0.0).all()


def test_same_seed_same_batches_other_seed_differs():
    cfg = _cfg()
    a = _take(pipeline.make_iterator(cfg, seed=3, shard_index=0, shard_count=1), 3)
    b = _take(pipeline.make_iterator(cfg, seed=3, shard_index=0, shard_count=1), 3)
    _assert_same(a, b)
    c = _take(pipeline.make_iterator(cfg, seed=4, shard_index=0, shard_count=1), 3)
    assert any(not np.array_equal(x["video"], y["video"]) for x, y in zip(a, c))


def test_restored_iterator_yields_exactly_the_next_batch():
    cfg = _cfg()
    it = pipeline.make_iterator(cfg, seed=0, shard_index=0, shard_count=1)
    _take(it, 2)
    state = it.get_state()
    expected = _take(it, 2)
    fresh = pipeline.make_iterator(cfg, seed=0, shard_index=0, shard_count=1)
    fresh.set_state(state)
    _assert_same(_take(fresh, 2), expected)


def test_worker_processes_give_the_same_stream_and_resume_exactly():
    cfg = _cfg(num_workers=2, num_synthetic_clips=8)
    reference = _take(pipeline.make_iterator(_cfg(num_synthetic_clips=8), seed=1, shard_index=0, shard_count=1), 5)
    it = pipeline.make_iterator(cfg, seed=1, shard_index=0, shard_count=1)
    try:
        first = _take(it, 3)
        state = it.get_state()
        rest = _take(it, 2)
    finally:
        it.close()
    _assert_same(first + rest, reference)  # workers change speed, not content
    resumed = pipeline.make_iterator(cfg, seed=1, shard_index=0, shard_count=1)
    try:
        resumed.set_state(state)
        _assert_same(_take(resumed, 2), rest)
    finally:
        resumed.close()


@pytest.mark.parametrize("shuffle", [True, False])
def test_shards_are_disjoint_and_cover_the_data(shuffle):
    cfg = _cfg(num_synthetic_clips=7, shuffle=shuffle, batch_size=2)
    seen = []
    for shard in range(2):
        it = pipeline.make_iterator(cfg, seed=0, shard_index=shard, shard_count=2, num_epochs=1)
        seen.append([int(i) for batch in it for i in batch["record_index"]])  # batches of 1 per process
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(7))


def test_each_epoch_is_a_new_permutation_with_new_augmentation():
    cfg = _cfg(num_synthetic_clips=6, batch_size=1)
    batches = _take(pipeline.make_iterator(cfg, seed=0, shard_index=0, shard_count=1), 12)
    order = [int(b["record_index"][0]) for b in batches]
    assert sorted(order[:6]) == sorted(order[6:]) == list(range(6))
    assert order[:6] != order[6:]
    first = {o: b for o, b in zip(order[:6], batches[:6])}
    second = {o: b for o, b in zip(order[6:], batches[6:])}
    assert any(not np.array_equal(first[i]["reference"], second[i]["reference"]) for i in range(6))


def test_sample_frames_stride_window_and_short_records():
    rng = np.random.default_rng(0)
    present = np.zeros(20, bool)
    present[15:] = True
    for _ in range(20):
        idx = pipeline.sample_frames(20, present, 5, 2, rng)
        assert (np.diff(idx) == 2).all() and idx[-1] < 20 and present[idx[0]:idx[-1] + 1].any()
    np.testing.assert_array_equal(pipeline.sample_frames(6, np.ones(6, bool), 5, 3, rng), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(pipeline.sample_frames(3, np.ones(3, bool), 5, 1, rng), [0, 1, 2, 2, 2])


def test_resize_crop_keeps_the_subject_and_moves_keypoints():
    cfg = _cfg(height=32, width=64, with_condition=True)
    video = np.zeros((9, 40, 120, 3), np.uint8)  # wider than the target: cropped horizontally
    mask = np.zeros((9, 40, 120), np.uint8)
    mask[:, 10:20, 90:100] = 1
    video[:, 14:16, 94:96] = 255  # a bright dot at the keypoint
    kps = np.tile(np.array([[[95.0, 15.0, 1.0]]], np.float32), (9, 1, 1))  # [F, 1, 3]
    record = {"video": video, "mask": mask, "keypoints": kps, "keypoints_kind": "sprite"}
    builder = pipeline.ExampleBuilder(cfg, source=[record], seed=0, epoch_length=1)
    for seed in range(3):
        ex = builder.build(record, np.random.default_rng(seed))
        assert ex["subject_mask"].any(axis=(1, 2)).all()  # the crop never loses the subject
        dot = np.unravel_index(ex["video"][0].sum(-1).argmax(), (32, 64))
        joint = np.unravel_index(ex["condition"][0].sum(-1).argmax(), (32, 64))
        assert abs(dot[0] - joint[0]) <= 1 and abs(dot[1] - joint[1]) <= 1


def test_tfds_source_feeds_the_pipeline(tmp_path):
    from media_fixtures import smooth_video
    from swapjax.data import tfds_builder, video_io

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        video_io.write_video(src / f"c{i}.mp4", smooth_video(12, 48, 80, seed=i), 12)
        video_io.write_mask(src / f"c{i}_mask.npz", box_mask(12, 48, 80))
    tfds_builder.build_dataset(src, tmp_path / "ds")
    cfg = _cfg(source="tfds", tfds_dir=str(tmp_path / "ds"), frame_stride=2, height=32, width=48)
    batches = _take(pipeline.make_iterator(cfg, seed=0, shard_index=0, shard_count=1), 3)
    assert batches[0]["video"].shape == (2, 5, 32, 48, 3)
    assert all(b["subject_mask"].any(axis=(2, 3)).all() for b in batches)
    _assert_same(batches, _take(pipeline.make_iterator(cfg, seed=0, shard_index=0, shard_count=1), 3))


def test_bad_sharding_is_a_config_error():
    with pytest.raises(ConfigError, match="batch_size \\(3\\) must be divisible"):
        pipeline.make_dataset(_cfg(batch_size=3), 0, shard_index=0, shard_count=2)
    with pytest.raises(ConfigError, match="shard_index \\(2\\)"):
        pipeline.make_dataset(_cfg(), 0, shard_index=2, shard_count=2)
