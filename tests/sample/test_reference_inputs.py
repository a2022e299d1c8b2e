"""The reference mask reaches the one reference preparation from every entry point: `read_inputs` (an image or
array, or the alpha of an RGBA reference), case NPZs, JSON job lists, batch folders, evaluation cases and
`sample.py --reference-mask`; a bad mask is one `InputError` line naming the input and the fix."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from sample_fixtures import CONFIG_PATH, box_track, clip, write_checkpoint
from swapjax.data import video_io
from swapjax.errors import InputError
from swapjax.evaluate.cases import read_cases
from swapjax.sample import cli
from swapjax.sample import jobs as job_lib
from swapjax.sample.inputs import read_case, read_inputs
from media_fixtures import framed


@pytest.fixture()
def job(tmp_path):
    """A video, its mask, a reference picture (the sprite off-centre on a plain canvas) and its mask PNG."""
    np.save(tmp_path / "v.npy", clip(5))
    np.save(tmp_path / "m.npy", box_track(5))
    image, mask = framed((60, 50), (255, 255, 255), 10, 12)
    video_io.write_image(tmp_path / "ref.png", image)
    cv2.imwrite(str(tmp_path / "ref_mask.png"), mask.astype(np.uint8) * 255)
    return tmp_path, image, mask


def test_reference_mask_image_is_read_as_the_subject(job):
    d, image, mask = job
    inputs = read_inputs(d / "v.npy", d / "m.npy", d / "ref.png", reference_mask=d / "ref_mask.png")
    np.testing.assert_array_equal(inputs.reference, image)
    np.testing.assert_array_equal(inputs.reference_mask, mask)
    assert read_inputs(d / "v.npy", d / "m.npy", d / "ref.png").reference_mask is None  # automatic cut-out
    np.save(d / "ref_mask.npy", mask)  # bool array
    np.testing.assert_array_equal(read_inputs(d / "v.npy", d / "m.npy", d / "ref.png",
                                              reference_mask=d / "ref_mask.npy").reference_mask, mask)


def test_rgba_reference_alpha_is_the_mask_and_an_opaque_alpha_is_none(job):
    d, image, mask = job
    rgba = np.concatenate([image, 255 * mask[..., None]], axis=-1).astype(np.uint8)
    video_io.write_image(d / "cut.png", rgba)
    inputs = read_inputs(d / "v.npy", d / "m.npy", d / "cut.png")
    np.testing.assert_array_equal(inputs.reference_mask, mask)
    assert (inputs.reference[~mask] == 128).all()  # composited on grey
    rgba[..., 3] = 255
    video_io.write_image(d / "opaque.png", rgba)
    assert read_inputs(d / "v.npy", d / "m.npy", d / "opaque.png").reference_mask is None
    rgba[..., 3] = 0
    video_io.write_image(d / "clear.png", rgba)
    with pytest.raises(InputError, match="'.*clear.png' is fully transparent"):
        read_inputs(d / "v.npy", d / "m.npy", d / "clear.png")


@pytest.mark.parametrize("make, words", [
    (lambda m: np.zeros((60, 49), np.uint8), r"reference mask '.*bad.png' is 60x49 \(HxW\) but reference image "
                                             r"'.*ref.png' is 60x50: save the mask at the reference image's size"),
    (lambda m: np.zeros((60, 50), np.uint8), r"reference mask '.*bad.png' is empty .*paint the subject white"),
])
def test_bad_reference_masks_are_one_line_errors(job, make, words):
    d, _, mask = job
    cv2.imwrite(str(d / "bad.png"), make(mask))
    with pytest.raises(InputError, match=words) as err:
        read_inputs(d / "v.npy", d / "m.npy", d / "ref.png", reference_mask=d / "bad.png")
    assert "\n" not in str(err.value)


def test_reference_mask_arrays_are_checked(job):
    d, _, mask = job
    np.save(d / "float.npy", mask * 2.0)
    with pytest.raises(InputError, match="holds floats outside"):
        read_inputs(d / "v.npy", d / "m.npy", d / "ref.png", reference_mask=d / "float.npy")
    (d / "mask.txt").write_text("1")
    with pytest.raises(InputError, match="unsupported format '.txt'"):
        read_inputs(d / "v.npy", d / "m.npy", d / "ref.png", reference_mask=d / "mask.txt")


def test_case_npz_may_hold_a_reference_mask(job):
    d, image, mask = job
    np.savez(d / "case.npz", source=clip(5), mask=box_track(5), reference=image, reference_mask=mask)
    np.testing.assert_array_equal(read_case(d / "case.npz").reference_mask, mask)
    np.savez(d / "bad.npz", source=clip(5), mask=box_track(5), reference=image, reference_mask=mask[1:])
    with pytest.raises(InputError, match=r"bad.npz' reference_mask is 59x50 \(HxW\) but its reference is 60x50"):
        read_case(d / "bad.npz")


def test_job_lists_batch_folders_and_evaluation_cases_carry_the_reference_mask(job):
    d, _, mask = job
    entry = {"video": "v.npy", "mask": "m.npy", "reference": "ref.png", "reference_mask": "ref_mask.png"}
    (d / "jobs.json").write_text(json.dumps([{**entry, "out": "o.mp4"},
                                             {"case": "c.npz", "reference_mask": "ref_mask.png", "out": "c.mp4"}]))
    listed = job_lib.jobs_from_json(d / "jobs.json")
    assert listed[0].reference_mask == d / "ref_mask.png"
    np.testing.assert_array_equal(listed[0].read(None).reference_mask, mask)
    assert isinstance(listed[1], InputError) and "drop the other inputs" in str(listed[1])
    (d / "cases.json").write_text(json.dumps([entry]))
    case = read_cases(d / "cases.json", d / "out")[0]
    np.testing.assert_array_equal(case.read(None).reference_mask, mask)

    batch = d / "batch"
    batch.mkdir()
    video_io.write_video(batch / "walk.mp4", clip(5), 12)
    np.save(batch / "walk_mask.npy", box_track(5))
    (batch / "walk_ref.png").write_bytes((d / "ref.png").read_bytes())
    (batch / "walk_ref_mask.png").write_bytes((d / "ref_mask.png").read_bytes())
    [found] = job_lib.jobs_from_folder(batch, d / "out")
    assert found.reference == batch / "walk_ref.png" and found.reference_mask == batch / "walk_ref_mask.png"


def test_sample_cli_reference_mask_flag(job, tmp_path_factory, capsys):
    d, _, _ = job
    base = ["--config", str(CONFIG_PATH), "--checkpoint", "unused", "--video", str(d / "v.npy"), "--mask",
            str(d / "m.npy"), "--reference", str(d / "ref.png")]
    [one] = cli.build_jobs(cli.parse_args(base + ["--reference-mask", str(d / "ref_mask.png"), "--out", "o.mp4"]))
    assert one.reference_mask == d / "ref_mask.png"
    with pytest.raises(InputError, match="--case holds its own mask and reference: drop --reference-mask"):
        cli.build_jobs(cli.parse_args(["--config", "c", "--checkpoint", "k", "--case", "c.npz", "--out", "o.mp4",
                                       "--reference-mask", "m.png"]))
    with pytest.raises(InputError, match="--reference-mask belong to single-job runs"):
        cli.build_jobs(cli.parse_args(["--config", "c", "--checkpoint", "k", "--jobs", "j.json",
                                       "--reference-mask", "m.png"]))
    ckpt = write_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpt")
    cv2.imwrite(str(d / "empty.png"), np.zeros((60, 50), np.uint8))
    out = d / "out.mp4"
    argv = base[:3] + [str(ckpt)] + base[4:] + ["--reference-mask", str(d / "empty.png"), "--out", str(out),
                                                "--quiet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "reference mask" in err[0] and "empty.png" in err[0]
    assert not out.exists()
