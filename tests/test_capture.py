"""Decode capture (issue #22): the pipeline's own decode is intercepted, its pieces joined into
one clip, and the interceptor always removed."""

from __future__ import annotations

import inspect

import pytest
import torch

import vidmem
from vidmem.capture import CapturedDecode, DecodeCapture, assemble
from vidmem.pipelines import facts_for, is_video_pipeline_class, video_pipeline_classes


def piece(z, **kwargs):
    return CapturedDecode(z, kwargs, tuple(z.shape))


def test_sections_join_in_time_by_their_equal_latents():
    clip = torch.randn(1, 4, 10, 3, 3)
    # Helios: chunks appended with nothing shared
    joined, how = assemble([piece(clip[:, :, :4]), piece(clip[:, :, 4:7]), piece(clip[:, :, 7:])])
    assert torch.equal(joined.latents, clip) and "3 sections" in how
    # FramePack (inverted): each new section precedes the clip over an overlap; the first one is
    # decoded again inside a later section
    sections = [clip[:, :, 6:], clip[:, :, 3:8], clip[:, :, 0:5], clip[:, :, 0:4]]
    joined, _ = assemble([piece(z) for z in sections])
    assert torch.equal(joined.latents, clip)
    # a continuation over an overlap
    joined, _ = assemble([piece(clip[:, :, :6]), piece(clip[:, :, 4:])])
    assert torch.equal(joined.latents, clip)


def test_tiles_join_where_their_overlaps_agree():
    clip = torch.randn(1, 4, 3, 10, 13)
    tiles = [clip[..., y0:y1, x0:x1] for y0, y1 in ((0, 6), (4, 10))
             for x0, x1 in ((0, 5), (3, 9), (7, 13))]
    joined, how = assemble([piece(t, temb=torch.tensor([0.05])) for t in tiles])
    assert torch.equal(joined.latents, clip) and "6 spatial tiles" in how
    assert torch.equal(joined.decode_kwargs["temb"], torch.tensor([0.05]))


def test_frame_batches_concatenate_and_count_their_frames():
    frames = torch.randn(7, 4, 3, 3)
    joined, _ = assemble([piece(frames[:3], num_frames=3), piece(frames[3:], num_frames=4)])
    assert torch.equal(joined.latents, frames) and joined.decode_kwargs["num_frames"] == 7


def test_pieces_decoded_with_different_arguments_are_refused():
    z = torch.randn(1, 4, 3, 3, 3)
    with pytest.raises(vidmem.UnsupportedModel, match="different arguments \\(temb\\)"):
        assemble([piece(z, temb=torch.tensor([0.0])), piece(z, temb=torch.tensor([0.5]))])


def test_interceptor_returns_a_meta_stand_in_and_is_removed_even_when_the_call_fails(tiny_pipe):
    vae = tiny_pipe.vae
    assert "decode" not in vars(vae)
    z = torch.randn(1, 16, 3, 4, 6)
    with DecodeCapture(tiny_pipe) as capture:
        out = vae.decode(z, return_dict=False)[0]
        assert out.is_meta and tuple(out.shape) == (1, 3, 9, 32, 48)  # what the decode gives
        assert vae.decode(z).sample.is_meta  # return_dict honoured
    assert "decode" not in vars(vae) and "postprocess_video" not in vars(tiny_pipe.video_processor)
    assert len(capture.calls) == 2 and torch.equal(capture.calls[0].latents, z)
    with pytest.raises(RuntimeError, match="boom"):
        with DecodeCapture(tiny_pipe):
            raise RuntimeError("boom")
    assert "decode" not in vars(vae)


def test_captured_latents_are_exactly_what_the_pipeline_decodes(tiny_pipe):
    """The capture sees the latents the pipeline's own call hands ``vae.decode`` (spied on a
    plain run), and the pipeline's post-processing ran on the stand-in only."""
    call = dict(prompt="a boat", num_frames=9, height=32, width=32, num_inference_steps=2)
    seen = []
    original = tiny_pipe.vae.decode
    tiny_pipe.vae.decode = lambda z, *a, **k: seen.append(z.clone()) or original(z, *a, **k)
    try:
        tiny_pipe(generator=torch.Generator().manual_seed(0), output_type="np", **call)
    finally:
        del tiny_pipe.vae.decode
    with DecodeCapture(tiny_pipe) as capture:
        result = tiny_pipe(generator=torch.Generator().manual_seed(0), output_type="np", **call)
    assert result.frames.is_meta
    clip = capture.clip(result)
    assert torch.equal(clip.decode_input.latents, seen[0]) and clip.frames is None
    assert clip.total_frames == 9 and capture.final_shape == (1, 3, 9, 32, 32)


def test_a_call_that_never_decodes_is_named(tiny_pipe):
    with DecodeCapture(tiny_pipe) as capture:
        pass
    with pytest.raises(vidmem.UnsupportedModel, match="returned without calling vae.decode"):
        capture.clip(None)


def test_video_pipelines_are_found_in_the_installed_diffusers():
    import diffusers

    names = video_pipeline_classes()
    for name in ("WanPipeline", "HeliosPipeline", "LTX2Pipeline", "HunyuanVideoFramepackPipeline",
                 "StableVideoDiffusionPipeline", "AnimateDiffVideoToVideoPipeline",
                 "SkyReelsV2DiffusionForcingPipeline", "LTXI2VLongMultiPromptPipeline"):
        assert name in names
    for name in ("StableDiffusionPipeline", "FluxPipeline"):
        assert name not in names and not is_video_pipeline_class(getattr(diffusers, name))
    assert len(names) >= 70


def test_facts_come_from_the_pipeline_and_its_vae(tiny_pipe):
    facts = facts_for(tiny_pipe)
    assert (facts.family, facts.temporal_factor, facts.spatial_multiple) == ("wan", 4, 16)
    assert facts.frames_error(10) and "9 or 13" in facts.frames_error(10)
    assert facts.size_error("height", 40) and "32 or 48" in facts.size_error("height", 40)
    from diffusers import HeliosPipeline

    # Helios' own default (132 frames, made in 33-frame chunks) breaks the VAE's 4k+1 rule:
    # its frame count is the pipeline's to check, not the VAE's
    assert inspect.signature(HeliosPipeline.__call__).parameters["num_frames"].default == 132


def test_not_a_pipeline_and_an_image_pipeline_are_refused(tmp_path):
    class NotAPipeline:
        pass

    with pytest.raises(vidmem.UnsupportedModel, match="NotAPipeline is not a diffusers pipeline"):
        vidmem.render(NotAPipeline(), tmp_path / "x.mp4")


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_inference_steps=0), "num_inference_steps must be a positive whole number"),
    (dict(height=-64), "height must be a positive whole number"),
    (dict(height=40), "height 40 must be a multiple of 16"),
])
def test_the_api_refuses_what_the_cli_refuses(tiny_pipe, spy_denoise, tmp_path, kwargs, message):
    with pytest.raises(vidmem.InvalidOptions, match=message):
        vidmem.render(tiny_pipe, tmp_path / "x.mp4", **dict(
            dict(prompt="x", num_frames=9, height=32, width=32, num_inference_steps=2), **kwargs))
    assert spy_denoise == [] and not (tmp_path / "x.mp4").exists()
