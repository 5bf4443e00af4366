"""Any video pipeline through the CLI (issue #22): a saved pipeline that vidmem had no rule for
renders with `vidmem render --model DIR`, equal to its own output; `--arg` takes typed values
and media files."""

from __future__ import annotations

import numpy as np
from PIL import Image

from render_helpers import cli
from video_utils import read_video
from vidmem.cli.clip import load_media
from zoo import all_cases, save_and_load


def test_a_long_video_pipeline_renders_from_its_directory(tmp_path):
    case = next(c for c in all_cases() if c.name == "skyreels-v2-df")
    model = tmp_path / "model"
    pipe = save_and_load(case.build(0), model)
    call = case.call()
    own = pipe(output_type="np", **call).frames[0]
    out = tmp_path / "long.mp4"
    proc = cli("render", "--model", model, "--out", out, "--lossless", "--quiet", "--seed", "0",
               "--prompt", call["prompt"], "--negative-prompt", call["negative_prompt"],
               "--num-frames", call["num_frames"], "--height", call["height"],
               "--width", call["width"], "--steps", call["num_inference_steps"],
               "--guidance-scale", call["guidance_scale"],
               *[f"--arg={k}={call[k]}" for k in ("base_num_frames", "overlap_history",
                                                 "addnoise_condition", "ar_step",
                                                 "max_sequence_length")])
    assert proc.returncode == 0, proc.stderr
    got, _ = read_video(out)
    own8 = (np.clip(own, 0, 1) * 255).round().astype(np.int16)
    assert got.shape == own8.shape and int(np.abs(got - own8).max()) <= 1


def test_a_required_input_is_named_before_loading(tmp_path):
    case = next(c for c in all_cases() if c.name == "classic-wan-i2v")
    model = tmp_path / "i2v"
    case.build(0).save_pretrained(model)
    proc = cli("render", "--model", model, "--out", tmp_path / "x.mp4")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "vidmem: error: WanImageToVideoPipeline needs --image PATH"]


def test_arg_files_load_as_the_pipeline_takes_them(tmp_path):
    image = tmp_path / "mask.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert isinstance(load_media(str(image)), Image.Image)
    assert load_media("5.0") == "5.0" and load_media(7) == 7
    import imageio.v3 as iio

    video = tmp_path / "pose.mp4"
    iio.imwrite(video, np.zeros((3, 16, 16, 3), np.uint8), fps=8, plugin="pyav", codec="libx264")
    frames = load_media(str(video))
    assert isinstance(frames, list) and len(frames) == 3 and frames[0].size == (16, 16)
