"""CogVideoX: conv_cache carried per tile across batch-aligned chunks equals the full decode."""

import pytest
import torch

from family_vaes import tiny_cogvideox_vae
from vidmem import decode_latents, plan_decode
from vidmem.metrics import psnr


@pytest.fixture(scope="module")
def vae():
    return tiny_cogvideox_vae()


def full(vae, z):
    with torch.no_grad():
        return vae.decode(z).sample


@pytest.mark.parametrize("latent_frames", [5, 6])
@pytest.mark.parametrize("chunk_frames", [4, 8, 12])
def test_chunked_equals_full_decode(vae, latent_frames, chunk_frames):
    z = torch.randn(1, 4, latent_frames, 6, 8, generator=torch.Generator().manual_seed(1))
    ref = full(vae, z)
    # frame-count rule: odd T -> 4(T-1)+1, even T -> 4T
    assert ref.shape[2] == (4 * (latent_frames - 1) + 1 if latent_frames % 2 else 4 * latent_frames)
    plan = plan_decode(vae, z, chunk_frames=chunk_frames, tile_size=0)
    assert plan.frames == ref.shape[2] and len(plan.windows) >= 2
    out = torch.cat(list(decode_latents(vae, z, chunk_frames=chunk_frames, tile_size=0,
                                        output_type="pt")), dim=2)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-4


def test_spatial_tiling_at_least_as_good_as_diffusers(vae):
    z = torch.randn(1, 4, 5, 16, 16, generator=torch.Generator().manual_seed(2))
    ref = full(vae, z)
    tile, overlap = 64, 16  # pixels (latent 8 / 2 at x8)
    ours = torch.cat(list(decode_latents(vae, z, chunk_frames=8, tile_size=tile,
                                         tile_overlap=overlap, output_type="pt")), dim=2)
    vae.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile,
                      tile_overlap_factor_height=overlap / tile, tile_overlap_factor_width=overlap / tile)
    try:
        theirs = full(vae, z)
    finally:
        vae.disable_tiling()
    assert ours.shape == ref.shape == theirs.shape
    assert psnr(ours, ref) >= psnr(theirs, ref)
