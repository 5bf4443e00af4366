"""A render's options: bad decode and writer options refused before the denoising (and before a
saved pipeline loads), and unset pipeline arguments left to the pipeline's own defaults.

Renders are the tiny Wan pipeline at 64x96, a few frames, so each takes seconds."""

from __future__ import annotations

import json

import pytest

import vidmem
from render_helpers import cli, seeded


# --- options validated before denoising -----------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    (dict(tile_size=8), "below the wan VAE's minimum"),
    (dict(tile_size=64, tile_overlap=64), "must be smaller than tile_size"),
    (dict(fps=float("inf")), "fps must be a positive number"),
    (dict(writer_options={"codec": "nope"}), "unknown codec 'nope'; available: "),
    (dict(writer_options={"crf": 99}), "crf must be"),
])
def test_bad_decode_and_writer_options_fail_before_denoising(tiny_pipe, tmp_path, spy_denoise,
                                                             options, message):
    with pytest.raises(ValueError, match=message):
        vidmem.render(tiny_pipe, tmp_path / "clip.mp4", **options, **seeded())
    assert spy_denoise == []
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_tile_size_exits_2_before_loading_a_saved_pipeline(tmp_path):
    model = vidmem.tiny.save_tiny_pipeline(tmp_path / "wan")
    proc = cli("render", "--model", model, "--out", tmp_path / "x.mp4", "--num-frames", "5",
               "--height", "64", "--width", "96", "--tile-size", "8")
    assert proc.returncode == 2 and "below the wan VAE's minimum" in proc.stderr
    assert "stage: load" not in proc.stderr


# --- defaults of the model ------------------------------------------------------------------------
def test_unset_pipeline_arguments_take_the_pipelines_own_defaults(tmp_path):
    import argparse

    from vidmem.cli import build_parser, cmd_render
    from vidmem.rendering import pipeline_defaults

    args = build_parser().parse_args(["render", "--out", str(tmp_path / "x.mp4"),
                                      "--model", str(tmp_path)])
    assert args.steps is None  # not 2: the pipeline decides
    args.pipeline_args, args.image = {}, None
    pipe = vidmem.tiny_pipeline("wan")
    kwargs = cmd_render.call_kwargs(args, pipe, lambda m: None)
    assert "num_inference_steps" not in kwargs
    assert pipeline_defaults(pipe, kwargs)["num_inference_steps"] == 50  # WanPipeline's default
    assert isinstance(args, argparse.Namespace)


def test_the_report_names_the_defaults_used(tmp_path):
    proc = cli("render", "--out", tmp_path / "x.mp4", "--num-frames", "5", "--quiet", "--json")
    assert proc.returncode == 0, proc.stderr
    defaults = json.loads(proc.stdout)["defaults"]
    assert defaults["num_inference_steps"] == 2 and defaults["height"] == 64  # tiny pipeline's
    assert defaults["guidance_scale"] == 5.0  # the pipeline's own


def test_an_impossible_size_is_refused_with_the_numbers_before_denoising(tiny_pipe, tmp_path,
                                                                         spy_denoise):
    """65536x65536 used to run for minutes until the OOM killer struck, leaving a 13 GB
    reservation and a lock; now the unavoidable buffers are sized first and the render refused."""
    out = tmp_path / "huge.mp4"
    with pytest.raises(vidmem.BudgetTooSmall, match=r"a 65536x65536 clip of 9 frames needs at "
                                                    r"least .* of host memory .* available"):
        vidmem.render(tiny_pipe, out, prompt="x", num_frames=9, height=65536, width=65536,
                      num_inference_steps=1)
    assert spy_denoise == [] and list(tmp_path.iterdir()) == []


def test_a_frame_count_past_the_rotary_table_is_refused_before_denoising(tiny_pipe, tmp_path,
                                                                         spy_denoise):
    """4101 frames failed after denoising started with torch's `shape '[1026, 1, 1, -1]' is
    invalid`; the limit is read from the transformer's config and named."""
    limit = tiny_pipe.transformer.config.rope_max_seq_len
    most = 4 * (limit - 1) + 1
    with pytest.raises(vidmem.InvalidOptions, match=rf"covers {limit}: at most {most} frames"):
        vidmem.render(tiny_pipe, tmp_path / "long.mp4", prompt="x", num_frames=most + 8,
                      height=16, width=16, num_inference_steps=1)
    assert spy_denoise == [] and list(tmp_path.iterdir()) == []
