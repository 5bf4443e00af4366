"""Causal decoders without a cache API, streamed exactly by carrying their temporal state
(``vidmem.decode.families.causal_cache``): HunyuanVideo 1.5, and LTX-Video / LTX-2 when their
decoder is causal. Non-causal LTX decoders fall back to cross-faded windows."""

import pytest
import torch

from vidmem import decode_latents, plan_decode
from vidmem.metrics import psnr

from family_vaes import tiny_ltx_vae


def hunyuan15():
    from diffusers import AutoencoderKLHunyuanVideo15

    torch.manual_seed(0)
    vae = AutoencoderKLHunyuanVideo15(latent_channels=4, block_out_channels=(8, 8, 8, 8, 8),
                                      layers_per_block=1).eval()
    return vae, 4, lambda z: vae.decoder(z)


def ltx(causal=True, inject_noise=False, timestep_conditioning=False):
    vae = tiny_ltx_vae(causal, inject_noise, timestep_conditioning)
    return vae, 8, lambda z: vae.decoder(z, None)


def ltx2(decoder_causal=True):
    from diffusers import AutoencoderKLLTX2Video

    torch.manual_seed(0)
    vae = AutoencoderKLLTX2Video(
        latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1),
        upsample_factor=(1, 1, 1), patch_size=4, decoder_causal=decoder_causal).eval()
    return vae, 8, lambda z, causal=None: vae.decoder(z, None, causal=causal)


FAMILIES = {"hunyuanvideo15": hunyuan15, "ltx": ltx, "ltx2": ltx2}
#: temporal factor of each tiny config (the tiny LTX-Video has two x2 temporal upsamplers).
FACTOR = {"hunyuanvideo15": 4, "ltx": 4, "ltx2": 8}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    vae, channels, one_call = FAMILIES[request.param]()
    z = torch.randn(1, channels, 7, 2, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = one_call(z)
    return request.param, vae, z, ref, one_call


def _stream(vae, z, **kw):
    return torch.cat(list(decode_latents(vae, z, output_type="pt", **kw)), 2)


def test_plan_is_exact_streaming_with_the_family_frame_rule(family):
    name, vae, z, ref, _ = family
    plan = plan_decode(vae, z, chunk_frames=8, tile_size=0)
    assert plan.family == name and plan.streaming == "cache"
    factor = FACTOR[name]
    assert plan.frames == factor * (z.shape[2] - 1) + 1 == ref.shape[2]


@pytest.mark.parametrize("chunk_latents", [1, 3])  # 3 does not divide the 7 latent frames
def test_chunked_decode_equals_one_decoder_call(family, chunk_latents):
    name, vae, z, ref, _ = family
    factor = FACTOR[name]
    out = _stream(vae, z, chunk_frames=chunk_latents * factor, tile_size=0)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-4


def test_state_is_fresh_for_every_decode(family):
    """The carried state lives per decode: a second decode of other latents is not polluted."""
    _, vae, z, ref, one_call = family
    _stream(vae, torch.randn_like(z), chunk_frames=8, tile_size=0)
    out = _stream(vae, z, chunk_frames=8, tile_size=0)
    assert (out - ref).abs().max().item() <= 1e-4
    # the module forwards were put back: a plain decoder call still gives the reference
    with torch.no_grad():
        assert torch.equal(one_call(z), ref)


def test_hunyuan15_tiles_beat_diffusers_spatial_tiling():
    """Same tile geometry as diffusers' tiled_decode: 4-latent tiles with 25% overlap."""
    vae, channels, one_call = hunyuan15()
    z = torch.randn(1, channels, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = one_call(z)
        vae.enable_tiling(tile_sample_min_height=64, tile_sample_min_width=64,
                          tile_latent_min_height=4, tile_latent_min_width=4,
                          tile_overlap_factor=0.25)
        vae.tile_sample_min_num_frames = 10**6  # only spatial tiling in the reference
        try:
            theirs = vae.decode(z).sample
        finally:
            vae.disable_tiling()
    ours = _stream(vae, z, chunk_frames=8, tile_size=64, tile_overlap=16)
    assert ours.shape == theirs.shape == ref.shape
    assert psnr(ours, ref) >= psnr(theirs, ref)


def test_ltx_noise_injection_draws_the_same_maps_for_every_chunk():
    """A decoder with inject_noise adds one random (H, W) map per resnet per call; chunks decoded
    from the same RNG state as a full decode reproduce it."""
    vae, channels, one_call = ltx(causal=True, inject_noise=True)
    with torch.no_grad():  # diffusers initialises the noise scales to zero
        for name, p in vae.decoder.named_parameters():
            if "per_channel_scale" in name:
                p.fill_(0.5)
    z = torch.randn(1, channels, 5, 2, 3, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.manual_seed(123)
        ref = one_call(z)
        torch.manual_seed(7)
        other = one_call(z)
    assert (ref - other).abs().max() > 1e-3  # the noise is there
    torch.manual_seed(123)
    out = _stream(vae, z, chunk_frames=8, tile_size=0)
    assert (out - ref).abs().max().item() <= 1e-4


def test_non_causal_ltx_decoders_use_windows():
    vae, channels, _ = ltx(causal=False)
    z = torch.randn(1, channels, 5, 2, 3)
    assert plan_decode(vae, z, chunk_frames=8, tile_size=0).streaming == "window"
    vae2, _, one_call = ltx2(decoder_causal=False)
    assert plan_decode(vae2, z, chunk_frames=8, tile_size=0).streaming == "window"
    # LTX-2's runtime flag: decode(z, causal=True) is a causal decode, streamed exactly
    plan = plan_decode(vae2, z, chunk_frames=8, tile_size=0, decode_kwargs={"causal": True})
    assert plan.streaming == "cache"
    with torch.no_grad():
        ref = one_call(z, causal=True)
    out = _stream(vae2, z, chunk_frames=8, tile_size=0, decode_kwargs={"causal": True})
    assert (out - ref).abs().max().item() <= 1e-4


def test_ltx2_windows_are_close_to_one_call():
    vae, channels, one_call = ltx2(decoder_causal=False)
    z = torch.randn(1, channels, 7, 2, 3, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = one_call(z)
    windows = _stream(vae, z, chunk_frames=16, tile_size=0)
    no_context = _stream(vae, z, chunk_frames=8, overlap_frames=0, tile_size=0)
    assert windows.shape == ref.shape
    assert psnr(windows, ref) > psnr(no_context, ref)


def test_unknown_decode_kwargs_are_refused():
    vae, channels, _ = ltx()
    with pytest.raises(ValueError, match="takes no argument"):
        plan_decode(vae, torch.randn(1, channels, 3, 2, 3), decode_kwargs={"causal": True})
