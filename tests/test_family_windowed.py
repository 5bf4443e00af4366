"""HunyuanVideo and (non-causal) LTX-Video: windowed streaming vs one decoder call and vs diffusers' own
temporal tiling at the same window geometry (5 latent windows stepping by 3).

HunyuanVideo streams with whole-clip GroupNorm statistics by default (tests/test_clip_norm.py);
its cross-faded windows are ``whole_clip_norm=False``, which these tests use."""

import pytest
import torch

from vidmem import decode_latents, plan_decode
from vidmem.metrics import psnr

from family_vaes import tiny_hunyuan_vae, tiny_ltx_vae


def hunyuan():
    vae = tiny_hunyuan_vae()
    return vae, 4, lambda z, **kw: vae.decoder(vae.post_quant_conv(z))


def ltx(timestep_conditioning=False):
    vae = tiny_ltx_vae(causal=False, timestep_conditioning=timestep_conditioning)
    return vae, 8, lambda z, temb=None: vae.decoder(z, temb)


FAMILIES = {"hunyuanvideo": hunyuan, "ltx": ltx}
#: options that select cross-faded windows (HunyuanVideo's default is whole-clip statistics).
WINDOWS = {"hunyuanvideo": {"whole_clip_norm": False}, "ltx": {}}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    vae, channels, one_call = FAMILIES[request.param]()
    z = torch.randn(1, channels, 13, 4, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = one_call(z)
    return request.param, vae, z, ref


def test_frame_count_and_layout(family):
    name, vae, z, ref = family
    plan = plan_decode(vae, z, chunk_frames=12, tile_size=0, **WINDOWS[name])
    assert plan.family == name and plan.streaming == "window"
    factor = vae.temporal_compression_ratio
    assert plan.frames == factor * (z.shape[2] - 1) + 1 == ref.shape[2]
    out = torch.cat(list(decode_latents(vae, z, chunk_frames=12, tile_size=0, output_type="pt",
                                        **WINDOWS[name])), 2)
    assert out.shape == ref.shape


def test_one_window_equals_one_decoder_call(family):
    name, vae, z, ref = family
    out = torch.cat(list(decode_latents(vae, z, chunk_frames=1000, tile_size=0, output_type="pt",
                                        **WINDOWS[name])), 2)
    assert (out - ref).abs().max().item() <= 1e-4


def test_windows_beat_diffusers_temporal_tiling_at_the_same_stride(family):
    """Same stride (3 latents of new frames per window); vidmem's default window context (2
    latents for LTX, 3 for HunyuanVideo, whose GroupNorm spans the window) against diffusers'
    5-latent windows."""
    name, vae, z, ref = family
    if not hasattr(vae, "use_framewise_decoding"):
        pytest.skip(f"diffusers has no temporal tiling for {name}")
    factor = vae.temporal_compression_ratio
    # diffusers: windows of 4 latents + 1, stepping by 3 latents  <->  vidmem: 3 new + context
    vae.use_framewise_decoding = True
    vae.tile_sample_min_num_frames, vae.tile_sample_stride_num_frames = 4 * factor, 3 * factor
    try:
        with torch.no_grad():
            theirs = vae.decode(z).sample
    finally:
        vae.use_framewise_decoding = False
    options = dict(chunk_frames=3 * factor, tile_size=0, **WINDOWS[name])
    ours = torch.cat(list(decode_latents(vae, z, output_type="pt", **options)), 2)
    plan = plan_decode(vae, z, **options)
    assert plan.context_latents == {"ltx": 2, "hunyuanvideo": 3}[name] and plan.blend_frames > 0
    assert ours.shape == theirs.shape == ref.shape
    assert psnr(ours, ref) >= psnr(theirs, ref)


def test_windowed_decode_is_close_to_one_call(family):
    name, vae, z, ref = family
    factor = vae.temporal_compression_ratio
    out = torch.cat(list(decode_latents(vae, z, chunk_frames=3 * factor, tile_size=0,
                                        output_type="pt", **WINDOWS[name])), 2)
    one_latent_windows = torch.cat(list(decode_latents(
        vae, z, chunk_frames=factor, overlap_frames=0, tile_size=0, output_type="pt",
        **WINDOWS[name])), 2)
    # context + cross-fade is closer to the full decode than windows without any context
    assert psnr(out, ref) > psnr(one_latent_windows, ref)


def test_overlap_up_to_the_default_context_is_accepted_and_longer_refused(family):
    """``overlap_frames`` may exceed ``chunk_frames`` up to the context the family's default
    already uses (HunyuanVideo: 3 latents = 8 usable frames; LTX: 2 latents = 16 frames)."""
    name, vae, z, _ = family
    factor = vae.temporal_compression_ratio
    default = plan_decode(vae, z, tile_size=0, **WINDOWS[name]).context_latents
    usable = factor * default if name == "ltx" else factor * (default - 1)
    plan = plan_decode(vae, z, chunk_frames=factor, overlap_frames=usable, tile_size=0,
                       **WINDOWS[name])
    assert plan.context_latents == default
    with pytest.raises(ValueError, match="overlap_frames .* at most"):
        decode_latents(vae, z, chunk_frames=factor, overlap_frames=usable + factor,
                       **WINDOWS[name])


def test_ltx_windows_inside_the_clip_keep_their_first_latent_frames():
    """A non-causal LTX window that starts at latent s > 0 decodes latent s to all its frames
    (as the full decode does), so it starts at the full decode's frame of latent s."""
    vae, _, _ = ltx()
    z = torch.randn(1, 8, 5, 4, 4, generator=torch.Generator().manual_seed(3))
    plan = plan_decode(vae, z, chunk_frames=4, tile_size=0)
    factor = vae.temporal_compression_ratio
    later = next(w for w in plan.windows if w.latents.start > 0)
    assert later.offset == factor * (later.latents.start - 1) + 1
    assert plan.blend_frames == factor * plan.context_latents


def test_ltx_decode_timestep_reaches_every_window():
    vae, _, one_call = ltx(timestep_conditioning=True)
    z = torch.randn(1, 8, 5, 4, 4, generator=torch.Generator().manual_seed(2))
    temb = torch.tensor([0.05])
    with torch.no_grad():
        ref = one_call(z, temb)
        unconditioned = one_call(z, torch.tensor([0.9]))
    assert (ref - unconditioned).abs().max() > 1e-3  # the timestep matters
    out = torch.cat(list(decode_latents(vae, z, chunk_frames=1000, tile_size=0, output_type="pt",
                                        decode_kwargs={"temb": temb})), 2)
    assert (out - ref).abs().max().item() <= 1e-4
