"""Whole-clip GroupNorm statistics (vidmem.decode.clip_norm) and HunyuanVideo's streaming with them."""


import pytest
import torch
import torch.nn.functional as F

from vidmem import decode_latents, plan_decode
from vidmem.decode.clip_norm import ClipNormStats
from vidmem.metrics import psnr, seam_ratio

from family_vaes import tiny_hunyuan_vae


@pytest.fixture(scope="module")
def hunyuan():
    vae = tiny_hunyuan_vae()
    z = torch.randn(1, 4, 6, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = vae.decoder(vae.post_quant_conv(z))
    return vae, z, ref


def _decode(vae, z, **options):
    options.setdefault("tile_size", 0)
    return torch.cat(list(decode_latents(vae, z, output_type="pt", **options)), 2)


def test_fixed_statistics_normalize_like_group_norm():
    norm = torch.nn.GroupNorm(4, 8).eval()
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(2, 8, 3, 5, 6)
    stats = ClipNormStats([norm])
    with stats.collecting():
        collected = norm(x)
    with stats.normalizing():
        fixed = norm(x)
    expected = F.group_norm(x, 4, norm.weight, norm.bias, norm.eps)
    assert torch.allclose(collected, expected, atol=1e-6)
    assert torch.allclose(fixed, expected, atol=1e-5)  # per sample: a batch of 2


def test_statistics_merged_piece_by_piece_equal_the_whole_clips():
    """Chunks of a clip, collected one after another, give the clip's statistics (Chan's merge)."""
    norm = torch.nn.GroupNorm(2, 4)
    x = torch.randn(1, 4, 9, 6, 5) * torch.linspace(0.5, 3, 9).view(1, 1, 9, 1, 1)  # drifting
    whole = ClipNormStats([norm])
    with whole.collecting():
        norm(x)
    pieces = ClipNormStats([norm])
    for chunk in x.split(4, dim=2):
        with pieces.collecting():
            norm(chunk)
    a, b = whole._moments[norm], pieces._moments[norm]
    assert a.count == b.count
    assert torch.allclose(a.mean, b.mean) and torch.allclose(a.variance(), b.variance())


def test_tiles_keep_their_own_statistics(hunyuan):
    """With tiles, each tile normalizes with its own whole-clip statistics: one chunk of tiles
    then equals vidmem's single-window tiles (and so does the exact schedule over chunks)."""
    vae, z, _ = hunyuan
    options = dict(tile_size=32, tile_overlap=8)
    one_window = _decode(vae, z, chunk_frames=1000, whole_clip_norm=False, **options)
    one_chunk = _decode(vae, z, chunk_frames=1000, **options)
    assert (one_chunk - one_window).abs().max().item() <= 1e-4


def test_whole_clip_statistics_are_hunyuans_default(hunyuan):
    vae, z, _ = hunyuan
    plan = plan_decode(vae, z, chunk_frames=8, tile_size=0)
    assert plan.streaming == "cache" and plan.clip_norm == "estimate"
    assert plan.context_latents == 0 and "whole-clip GroupNorm statistics" in plan.summary()
    windows = plan_decode(vae, z, chunk_frames=8, tile_size=0, whole_clip_norm=False)
    assert windows.streaming == "window" and windows.clip_norm is None


def test_exact_statistics_stream_the_full_decode(hunyuan):
    """With every norm's statistics gathered exactly (one pass per norm), the chunked decode
    equals one decoder call over the clip: the decoder is causal once its statistics are fixed."""
    vae, z, ref = hunyuan
    out = _decode(vae, z, chunk_frames=12, whole_clip_norm="exact")
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-4


def test_estimated_statistics_beat_windows_without_seams(hunyuan):
    vae, z, ref = hunyuan
    estimate = _decode(vae, z, chunk_frames=8)
    windows = _decode(vae, z, chunk_frames=8, whole_clip_norm=False)
    assert psnr(estimate, ref) > psnr(windows, ref) + 3
    # no brightness step where one chunk hands over to the next: like the full decode's
    plan = plan_decode(vae, z, chunk_frames=8, tile_size=0)
    bounds = [w.keep_from for w in plan.windows[1:]]
    assert seam_ratio(estimate, bounds) == pytest.approx(seam_ratio(ref, bounds), rel=0.1)


def test_whole_clip_norm_is_refused_where_norms_do_not_span_the_clip():
    from vidmem.tiny import tiny_pipeline

    vae = tiny_pipeline("wan").vae
    z = torch.zeros(1, 16, 2, 4, 4)
    with pytest.raises(ValueError, match="whole_clip_norm is for decoders"):
        plan_decode(vae, z, whole_clip_norm=True)
    with pytest.raises(ValueError, match="whole_clip_norm must be"):
        plan_decode(vae, z, whole_clip_norm="sometimes")


def test_whole_clip_norm_flag_maps_to_the_api_and_names_its_default():
    import argparse

    from vidmem.cli.options import add_decode_options, decode_options_from

    def whole_clip_norm(args):
        return decode_options_from(args).whole_clip_norm

    p = argparse.ArgumentParser()
    add_decode_options(p)
    assert whole_clip_norm(p.parse_args([])) is None  # auto: the family's default
    assert [whole_clip_norm(p.parse_args(["--whole-clip-norm", v]))
            for v in ("on", "off", "exact")] == [True, False, "exact"]
    action = next(a for a in p._actions if a.dest == "whole_clip_norm")
    assert "default" in action.help and "HunyuanVideo" in action.help


def test_decode_to_video_takes_whole_clip_norm(tmp_path):
    """The option reaches the video path too: refused for a VAE without clip-spanning norms
    before the output is touched."""
    import vidmem
    from vidmem.tiny import tiny_pipeline

    vae = tiny_pipeline("wan").vae
    z = torch.zeros(1, 16, 2, 4, 4)
    out = tmp_path / "x.mp4"
    with pytest.raises(ValueError, match="whole_clip_norm is for decoders"):
        vidmem.decode_to_video(vae, z, out, whole_clip_norm=True)
    assert not out.exists()
    flags = vidmem.DecodeOptions(whole_clip_norm=False).cli_flags()
    assert flags == ["--whole-clip-norm", "off"]  # what a failed render's resume command repeats
