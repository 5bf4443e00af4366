"""End to end: the pipeline's own frames equal vidmem's streamed, losslessly written frames."""

import numpy as np
import pytest
import torch

import vidmem

from video_utils import read_video

CALL = dict(prompt="a red fox running through snow", num_frames=17, height=64, width=96,
            num_inference_steps=2)


def test_lossless_render_equals_pipeline_output(tiny_pipe, tmp_path):
    expected = tiny_pipe(**CALL, generator=torch.Generator().manual_seed(0),
                         output_type="np").frames[0]
    expected_u8 = np.round(expected * 255).astype(np.int16)
    out = tmp_path / "clip.mp4"
    report = vidmem.render(tiny_pipe, out, fps=16, chunk_frames=8, lossless=True,
                           generator=torch.Generator().manual_seed(0), **CALL)
    frames, rate = read_video(out)
    assert frames.shape == (17, 64, 96, 3)
    assert rate == 16
    assert np.abs(frames.astype(np.int16) - expected_u8).max() <= 1
    assert report.frames == 17 and (report.height, report.width) == (64, 96)
    assert {"denoise", "decode", "write"} <= set(report.seconds)
    assert report.peak_rss_bytes > 0 and report.file_bytes == out.stat().st_size


def test_default_render_is_plain_h264(tiny_pipe, tmp_path):
    import av

    out = tmp_path / "clip.mp4"
    vidmem.render(tiny_pipe, out, fps=24, generator=torch.Generator().manual_seed(0), **CALL)
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name in ("h264", "libx264")
        assert s.codec_context.pix_fmt == "yuv420p"
        n = sum(1 for _ in c.decode(s))
        assert n == 17 and s.average_rate == 24


def test_render_rejects_bad_input_before_denoising(tiny_pipe, tmp_path):
    calls = []
    original = tiny_pipe.transformer.forward
    tiny_pipe.transformer.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        with pytest.raises(FileNotFoundError, match="does not exist"):
            vidmem.render(tiny_pipe, tmp_path / "missing" / "clip.mp4", **CALL)
        with pytest.raises(ValueError, match="fps must be positive"):
            vidmem.render(tiny_pipe, tmp_path / "clip.mp4", fps=0, **CALL)
        with pytest.raises(ValueError, match=r"\.mp4"):
            vidmem.render(tiny_pipe, tmp_path / "clip.avi", **CALL)
    finally:
        tiny_pipe.transformer.forward = original
    assert calls == []


def test_unsupported_pipeline_is_named(tmp_path):
    class NotAVideoPipeline:
        pass

    with pytest.raises(ValueError, match="NotAVideoPipeline is not a diffusers pipeline"):
        vidmem.render(NotAVideoPipeline(), tmp_path / "x.mp4")
