"""Wan streaming decode: exact with the causal cache carried across chunks; tiles beat diffusers."""

import pytest
import torch

from vidmem import decode_latents, plan_decode
from vidmem.tiny import tiny_wan_vae

from vidmem.metrics import psnr


@pytest.fixture(scope="module", params=[None, 2], ids=["wan2.1", "wan2.2"])
def vae_and_latents(request):
    vae = tiny_wan_vae(0, patch_size=request.param)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, 16, 7, 12, 16, generator=g)
    with torch.no_grad():
        ref = vae.decode(z).sample
    return vae, z, ref


@pytest.mark.parametrize("chunk_frames", [4, 8, 12, 100])
def test_chunked_decode_equals_full_decode(vae_and_latents, chunk_frames):
    vae, z, ref = vae_and_latents
    chunks = list(decode_latents(vae, z, chunk_frames=chunk_frames, tile_size=0, output_type="pt"))
    expected_chunks = -(-7 // max(1, chunk_frames // 4))
    assert len(chunks) == expected_chunks
    out = torch.cat(chunks, dim=2)
    assert out.shape == ref.shape
    assert out.dtype == torch.float32
    assert (out - ref).abs().max().item() <= 1e-4


def test_a_suspended_decode_leaves_autograd_as_the_caller_had_it(vae_and_latents):
    """Chunks are decoded without autograd, but the consumer's code between chunks runs with
    its own grad mode (regression: a half-read decode left autograd off in the whole thread)."""
    vae, z, _ = vae_and_latents
    chunks = decode_latents(vae, z, chunk_frames=4, tile_size=0, output_type="pt")
    first = next(chunks)
    assert torch.is_grad_enabled() and not first.requires_grad
    x = torch.ones(2, requires_grad=True)
    (x * 2).sum().backward()  # the caller's own autograd works while the decode is suspended
    assert x.grad.tolist() == [2.0, 2.0]
    rest = list(chunks)
    assert rest and torch.is_grad_enabled()
    del chunks


def test_frame_count_formula(vae_and_latents):
    vae, z, ref = vae_and_latents
    plan = plan_decode(vae, z, chunk_frames=8, tile_size=0)
    assert plan.frames == 4 * (z.shape[2] - 1) + 1 == ref.shape[2]
    assert (plan.height, plan.width) == tuple(ref.shape[-2:])


def test_uint8_chunks_are_rounded_frames(vae_and_latents):
    vae, z, ref = vae_and_latents
    chunks = list(decode_latents(vae, z, chunk_frames=8, tile_size=0))
    frames = torch.cat(chunks, dim=0)
    assert frames.dtype == torch.uint8 and frames.shape == (ref.shape[2], *ref.shape[-2:], 3)
    expected = ((ref[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0)
    assert (frames.int() - expected.int()).abs().max().item() <= 1


def test_spatial_tiling_beats_diffusers_tiling_at_same_geometry(vae_and_latents):
    vae, z, ref = vae_and_latents
    sf = vae.config.scale_factor_spatial
    tile, overlap = 6 * sf, 2 * sf
    ours = torch.cat(list(decode_latents(vae, z, chunk_frames=8, tile_size=tile,
                                         tile_overlap=overlap, output_type="pt")), dim=2)
    plan = plan_decode(vae, z, tile_size=tile, tile_overlap=overlap)
    assert len(plan.tiles) > 1
    vae.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile,
                      tile_sample_stride_height=tile - overlap, tile_sample_stride_width=tile - overlap)
    try:
        with torch.no_grad():
            theirs = vae.decode(z).sample
    finally:
        vae.disable_tiling()
    assert ours.shape == ref.shape
    assert psnr(ours, ref) >= psnr(theirs, ref)


def test_bf16_vae_runs_and_stays_close():
    vae = tiny_wan_vae(0).to(torch.bfloat16)
    z = torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = vae.decode(z.to(torch.bfloat16)).sample.float()
    out = torch.cat(list(decode_latents(vae, z, chunk_frames=4, tile_size=0, output_type="pt")), 2)
    assert psnr(out, ref) > 40


@pytest.mark.parametrize("kwargs, message", [
    (dict(tile_size=16), "below the wan VAE's minimum"),
    (dict(tile_size=64, tile_overlap=64), "must be smaller than tile_size"),
    (dict(chunk_frames=0), "at least 1"),
    (dict(chunk_frames=-3), "non-negative"),
])
def test_invalid_options_fail_before_decoding(kwargs, message):
    vae = tiny_wan_vae(0)
    z = torch.randn(1, 16, 3, 16, 16)
    with pytest.raises(ValueError, match=message):
        decode_latents(vae, z, **kwargs)


def test_wrong_rank_latents_is_a_clear_error():
    vae = tiny_wan_vae(0)
    with pytest.raises(ValueError, match="5-D latents"):
        decode_latents(vae, torch.randn(16, 3, 8, 8))
