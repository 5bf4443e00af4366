"""Image VAEs applied framewise (exact), and the generic fallback for an unknown video VAE."""

import logging

import pytest
import torch

from family_vaes import tiny_image_vae
from vidmem import decode_latents, plan_decode
from vidmem.decode.families import adapter_for
from vidmem.metrics import psnr


@pytest.fixture(scope="module")
def image_vae():
    return tiny_image_vae()


def test_image_vae_framewise_matches_batch_decode(image_vae):
    z = torch.randn(10, 4, 8, 12, generator=torch.Generator().manual_seed(0))  # frames as batch
    with torch.no_grad():
        ref = image_vae.decode(z).sample
    chunks = list(decode_latents(image_vae, z, chunk_frames=3, tile_size=0, output_type="pt"))
    assert [c.shape[0] for c in chunks] == [3, 3, 3, 1]
    out = torch.cat(chunks, dim=0)  # the native time axis of (N, 3, H, W) is 0
    assert out.shape == ref.shape == (10, 3, 16, 24)
    assert (out - ref).abs().max().item() <= 1e-4


def test_image_vae_accepts_video_layout_and_writes_uint8(image_vae):
    z = torch.randn(1, 4, 5, 8, 8, generator=torch.Generator().manual_seed(1))
    frames = torch.cat(list(decode_latents(image_vae, z, chunk_frames=2, tile_size=0)), dim=0)
    assert frames.shape == (5, 16, 16, 3) and frames.dtype == torch.uint8


def test_image_vae_spatial_tiling_beats_diffusers_tiling(image_vae):
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = image_vae.decode(z).sample
    out = torch.cat(list(decode_latents(image_vae, z, tile_size=16, tile_overlap=8,
                                        output_type="pt")), 0)
    assert len(plan_decode(image_vae, z, tile_size=16, tile_overlap=8).tiles) == 9
    # diffusers' AutoencoderKL tiling at the same geometry: 16 px tiles, 8 px overlap
    image_vae.enable_tiling()
    image_vae.tile_sample_min_size, image_vae.tile_latent_min_size = 16, 8
    image_vae.tile_overlap_factor = 0.5
    try:
        with torch.no_grad():
            theirs = image_vae.decode(z).sample
    finally:
        image_vae.disable_tiling()
    assert psnr(out, ref) >= psnr(theirs, ref)


class CausalToyVAE(torch.nn.Module):
    """An unknown VAE: causal, x4 in time (first latent -> 1 frame), x2 in space."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def decode(self, z):
        first = z[:, :3, :1]
        rest = z[:, :3, 1:].repeat_interleave(4, dim=2)
        x = torch.cat([first, rest], 2) * self.weight
        x = x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)

        class Out:
            sample = torch.tanh(x)

        return Out()


def test_generic_fallback_learns_the_time_rule_and_warns_once(caplog):
    vae = CausalToyVAE()
    z = torch.randn(1, 4, 9, 4, 6, generator=torch.Generator().manual_seed(3))
    with caplog.at_level(logging.WARNING, logger="vidmem"):
        plan = plan_decode(vae, z, chunk_frames=8)
        adapter_for(vae)
    assert plan.family == "generic" and plan.frames == 4 * 8 + 1
    assert sum("no adapter for CausalToyVAE" in r.message for r in caplog.records) == 1
    ref = vae.decode(z).sample
    out = torch.cat(list(decode_latents(vae, z, chunk_frames=8, output_type="pt")), 2)
    assert out.shape == ref.shape
    # this toy VAE has no temporal receptive field, so overlapping windows reproduce it exactly
    assert (out - ref).abs().max().item() <= 1e-6
