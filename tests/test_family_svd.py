"""SVD temporal decoder: overlapping, cross-faded windows beat SVD's own decode_chunk_size chunks."""

import pytest
import torch

from vidmem import decode_latents, plan_decode
from vidmem.metrics import psnr


@pytest.fixture(scope="module")
def vae():
    from diffusers import AutoencoderKLTemporalDecoder

    torch.manual_seed(0)
    return AutoencoderKLTemporalDecoder(block_out_channels=(32, 32), latent_channels=4,
                                        down_block_types=("DownEncoderBlock2D",) * 2,
                                        layers_per_block=1).eval()


@pytest.fixture(scope="module")
def latents_and_ref(vae):
    z = torch.randn(24, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = vae.decode(z, num_frames=24).sample
    return z, ref


def test_layout_and_frame_count(vae, latents_and_ref):
    z, ref = latents_and_ref
    plan = plan_decode(vae, z, chunk_frames=8)  # without num_frames: the batch is one video
    chunks = list(decode_latents(vae, z, chunk_frames=8, tile_size=0, output_type="pt",
                                 decode_kwargs={"num_frames": 24}))
    out = torch.cat(chunks, dim=0)  # native layout (B*F, 3, H, W): time is axis 0
    assert out.shape == ref.shape == (24, 3, 16, 16)
    assert plan.frames == 24 and len(plan.windows) == 3 and plan.context_latents == 4


def test_overlap_beats_svds_own_chunks(vae, latents_and_ref):
    z, ref = latents_and_ref
    with torch.no_grad():  # what the SVD pipeline does with decode_chunk_size=8
        theirs = torch.cat([vae.decode(z[i:i + 8], num_frames=8).sample for i in range(0, 24, 8)])
    ours = torch.cat(list(decode_latents(vae, z, chunk_frames=8, tile_size=0, output_type="pt",
                                         decode_kwargs={"num_frames": 24})), dim=0)
    assert psnr(ours, ref) > psnr(theirs, ref) + 5


def test_one_window_equals_full_decode(vae, latents_and_ref):
    z, ref = latents_and_ref
    out = torch.cat(list(decode_latents(vae, z, chunk_frames=64, tile_size=0, output_type="pt",
                                        decode_kwargs={"num_frames": 24})), dim=0)
    assert (out - ref).abs().max().item() <= 1e-4


def test_uint8_stream_for_the_writer(vae, latents_and_ref):
    z, _ = latents_and_ref
    frames = torch.cat(list(decode_latents(vae, z, chunk_frames=8, decode_kwargs={"num_frames": 24})))
    assert frames.shape == (24, 16, 16, 3) and frames.dtype == torch.uint8
