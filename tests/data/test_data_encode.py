"""`python -m swapjax.data.encode`: text and image encodings written once per record of a built dataset, read back
with `read_encoding` exactly as the JAX encoders give them; a bad prompt file is one error line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from encoder_fixtures import save_tiny_pipeline
from helpers import rel_err
from swapjax.convert.pipeline import convert_pipeline
from swapjax.data import build, encode, video_io
from swapjax.data.synthetic import SyntheticClips
from swapjax.encoding import TextEncoder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("encode")
    clips = SyntheticClips(32, 48, 5, 2, seed=0)
    (root / "src").mkdir()
    for i in range(2):
        video_io.write_video(root / "src" / f"clip{i}.mp4", clips[i]["video"], clips[i]["fps"])
        video_io.write_mask(root / "src" / f"clip{i}_mask.npz", clips[i]["mask"])
    assert build.main(["--src", str(root / "src"), "--out", str(root / "data")]) == 0
    save_tiny_pipeline(root / "pipe")
    convert_pipeline(root / "pipe", root / "converted")
    return root


def test_encodings_per_record_equal_the_encoders(setup, tmp_path):
    (tmp_path / "prompts.json").write_text(json.dumps({"clip1": "a red car drives down the road"}))
    out = tmp_path / "enc"
    assert encode.main(["--pipeline", str(setup / "converted"), "--data", str(setup / "data"), "--out", str(out),
                        "--prompts", str(tmp_path / "prompts.json"), "--prompt", "a video"]) == 0
    index = json.loads((out / encode.INDEX_FILE).read_text())
    assert index["count"] == 2
    from swapjax.data.tfds_builder import open_source

    source = open_source(setup / "data", "train")
    with TextEncoder.from_pipeline(setup / "converted", max_length=64) as text:
        for i in range(2):
            prompt = "a red car drives down the road" if source[i]["name"] == "clip1" else "a video"
            got = encode.read_encoding(out, i, text_len=64)
            want = text.encode(prompt)  # 64 padded tokens here, 512 in the file: equal up to float rounding
            assert rel_err(got["text"], want) <= 1e-5 and not got["text"][~want.any(-1)].any()
            assert got["image"].shape == (5, 32) and np.isfinite(got["image"]).all()


def test_bad_prompt_file_is_one_error_line(setup, tmp_path, capsys):
    (tmp_path / "prompts.json").write_text('["not", "an", "object"]')
    assert encode.main(["--pipeline", str(setup / "converted"), "--data", str(setup / "data"), "--out",
                        str(tmp_path / "enc"), "--prompts", str(tmp_path / "prompts.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must be a JSON object from record names to prompt strings" in err[0]
    assert not (tmp_path / "enc").exists()
