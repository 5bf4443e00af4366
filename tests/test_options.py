"""Typed options (issue #28): ``DecodeOptions`` and ``WriterSettings`` are validated once when
built, with the messages the command line gives, and every decode and writer flag of ``vidmem
render`` reaches each clip of a batch exactly as it reaches a clip rendered alone."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest

import vidmem
from vidmem import DecodeOptions, InvalidOptions, WriterSettings
from vidmem.cli import build_parser, main
from vidmem.cli.clip import check_args
from video_utils import read_video


@pytest.mark.parametrize("kwargs, message", [
    (dict(chunk_frames=0), "chunk_frames must be at least 1 pixel frame"),
    (dict(tile_size=-1), "tile_size must be a non-negative integer, got -1"),
    (dict(tile_overlap=1.5), "tile_overlap must be a non-negative integer, got 1.5"),
    (dict(whole_clip_norm="maybe"), "whole_clip_norm must be True, False, 'estimate', 'exact'"),
    (dict(oom_fallback="yes"), "oom_fallback must be True or False"),
])
def test_decode_options_refuse_bad_values_when_built(kwargs, message):
    with pytest.raises(InvalidOptions, match=message):
        DecodeOptions(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(fps=0), "fps must be positive"),
    (dict(fps=1e6), "fps must be at most 1000"),
    (dict(fps=float("nan")), "fps must be a positive number"),
    (dict(crf=-3), "crf must be a whole number from 0 to 63, got -3"),
    (dict(codec="mpeg1"), "unknown codec 'mpeg1'"),
    (dict(queue_size=0), "queue_size must be at least 1"),
    (dict(flush_after=-1), "flush_after must be a non-negative number"),
])
def test_writer_settings_refuse_bad_values_when_built(kwargs, message, tmp_path):
    with pytest.raises(InvalidOptions, match=message):
        WriterSettings(**kwargs)
    # the writer refuses them when constructed, before any frame (and creates nothing)
    with pytest.raises(InvalidOptions, match=message):
        vidmem.VideoWriter(tmp_path / "x.mp4", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_settings_round_trip_through_json_and_repeat_as_flags():
    decode = DecodeOptions(chunk_frames=8, tile_size=64, tile_overlap=16, whole_clip_norm="exact",
                           memory_breakdown=True)
    writer = WriterSettings(fps=Fraction(30000, 1001), crf=20, lossless=True)
    assert DecodeOptions.from_dict(decode.to_dict()) == decode
    assert WriterSettings.from_dict(writer.to_dict()) == writer
    assert decode.cli_flags() == ["--whole-clip-norm", "exact", "--chunk-frames", "8",
                                  "--tile-size", "64", "--tile-overlap", "16",
                                  "--memory-breakdown"]
    assert writer.cli_flags() == ["--fps", "30000/1001", "--lossless"]
    # the flags, parsed by the CLI, give the same options back
    args = build_parser().parse_args(["decode", "x.latents.safetensors", "--out", "x.mp4",
                                      *decode.cli_flags(), "--lossless"])
    from vidmem.cli.options import decode_options_from

    assert decode_options_from(args) == decode


def test_keyword_shortcuts_override_the_typed_value():
    base = DecodeOptions(tile_size=64, chunk_frames=8)
    assert DecodeOptions.build(base, tile_size=32) == dataclasses.replace(base, tile_size=32)
    assert DecodeOptions.build(base) is base
    assert WriterSettings.build(WriterSettings(fps=24), lossless=True) == WriterSettings(
        fps=24, lossless=True)
    with pytest.raises(InvalidOptions, match="decode must be a vidmem.DecodeOptions"):
        DecodeOptions.build({"tile_size": 64})


DECODE_FLAGS = ["--chunk-frames", "4", "--overlap-frames", "3", "--tile-size", "48",
                "--tile-overlap", "16", "--whole-clip-norm", "off", "--memory-breakdown",
                "--fps", "12", "--lossless"]


def test_every_decode_and_writer_flag_reaches_each_clip_of_a_batch(tmp_path, monkeypatch):
    """The options a batch clip is rendered with are exactly those the same flags give a clip
    rendered alone (the bug: --whole-clip-norm and --memory-breakdown never reached the clips)."""
    import vidmem.batch as batch

    alone = build_parser().parse_args(["render", "--out", str(tmp_path / "a.mp4"),
                                       *DECODE_FLAGS])
    check_args(alone)
    seen = []

    def fake_render(pipe, path, *, decode_options, writer_settings, **kwargs):
        seen.append((decode_options, writer_settings))
        raise RuntimeError("stop here")  # recorded as the clip's failure; the batch goes on

    monkeypatch.setattr(batch, "render", fake_render)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox\na boat\n")
    code = main(["render", "--prompts", str(prompts), "--out-dir", str(tmp_path / "clips"),
                 "--quiet", *DECODE_FLAGS])
    assert code == 1  # both clips "failed" in the fake render
    assert seen == [(alone.decode_options, alone.writer_settings)] * 2
    assert alone.decode_options == DecodeOptions(chunk_frames=4, overlap_frames=3, tile_size=48,
                                                 tile_overlap=16, whole_clip_norm=False,
                                                 memory_breakdown=True)
    assert alone.writer_settings == WriterSettings(fps=12.0, lossless=True)


def test_a_batch_clip_with_whole_clip_norm_off_equals_the_clip_rendered_alone(tmp_path):
    """Frames, on the family the flag changes (HunyuanVideo): the batch clip equals the clip
    rendered alone with the same flag, and differs from the default (so the flag arrived)."""
    model = ["--model", "vidmem-tiny:hunyuanvideo:0", "--num-frames", "9", "--chunk-frames",
             "4", "--lossless", "--quiet", "--seed", "3"]
    prompts = tmp_path / "p.txt"
    prompts.write_text('{"prompt": "a fox", "name": "fox"}\n')
    assert main(["render", "--prompts", str(prompts), "--out-dir", str(tmp_path / "clips"),
                 "--whole-clip-norm", "off", *model]) == 0
    assert main(["render", "--prompt", "a fox", "--out", str(tmp_path / "alone.mp4"),
                 "--whole-clip-norm", "off", *model]) == 0
    assert main(["render", "--prompt", "a fox", "--out", str(tmp_path / "default.mp4"),
                 *model]) == 0
    batch = read_video(tmp_path / "clips" / "fox.mp4")[0]
    assert np.array_equal(batch, read_video(tmp_path / "alone.mp4")[0])
    assert not np.array_equal(batch, read_video(tmp_path / "default.mp4")[0])
