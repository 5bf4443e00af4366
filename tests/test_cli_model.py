"""`vidmem render --model DIR`: the real loading path (save_pretrained, then from_pretrained)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import vidmem
from video_utils import read_video


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-wan")
    vidmem.tiny_pipeline("wan", seed=0).save_pretrained(d)
    return d


def cli(*args):
    return subprocess.run([sys.executable, "-m", "vidmem", *args], capture_output=True, text=True,
                          timeout=300)


def test_render_from_a_saved_pipeline_equals_its_own_output(model_dir, tmp_path):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(prompt="a tiny boat", num_frames=9, height=64, width=96, num_inference_steps=2,
                    generator=torch.Generator().manual_seed(3), output_type="np",
                    max_sequence_length=64).frames[0]
    out = tmp_path / "clip.mp4"
    proc = cli("render", "--model", str(model_dir), "--prompt", "a tiny boat", "--num-frames", "9",
               "--seed", "3", "--lossless", "--arg", "max_sequence_length=64", "--out", str(out),
               "--quiet", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["frames"] == 9
    frames, _ = read_video(out)
    assert np.abs(frames.astype(int) - np.round(expected * 255).astype(int)).max() <= 1


def test_unsupported_pipeline_and_missing_model_fail_before_loading(tmp_path):
    fake = tmp_path / "sd"
    fake.mkdir()
    (fake / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    proc = cli("render", "--model", str(fake), "--out", str(tmp_path / "x.mp4"))
    assert proc.returncode == 2
    assert "does not support StableDiffusionPipeline" in proc.stderr and "WanPipeline" in proc.stderr
    proc = cli("render", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "x.mp4"))
    assert proc.returncode == 2 and "not found" in proc.stderr
    proc = cli("render", "--out", str(tmp_path / "x.mp4"), "--arg", "oops")
    assert proc.returncode == 2 and "expected NAME=VALUE" in proc.stderr
