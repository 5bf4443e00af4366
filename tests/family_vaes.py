"""Tiny VAE configs shared by the family tests (random weights, fixed seed)."""

import torch


def tiny_ltx_vae(causal=False, inject_noise=False, timestep_conditioning=False):
    """An ``AutoencoderKLLTXVideo`` with x4 time (two temporal upsamplers) and x4 space."""
    from diffusers import AutoencoderKLLTXVideo

    torch.manual_seed(0)
    return AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(inject_noise,) * 5, upsample_residual=(False,) * 4,
        upsample_factor=(1,) * 4, timestep_conditioning=timestep_conditioning, patch_size=1,
        patch_size_t=1, encoder_causal=True, decoder_causal=causal).eval()


def tiny_hunyuan_vae():
    """A HunyuanVideo VAE with every block type and GroupNorm over time, 8 channels wide."""
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(0)
    return AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
        spatial_compression_ratio=8, temporal_compression_ratio=4).eval()


def tiny_cogvideox_vae():
    """An ``AutoencoderKLCogVideoX`` with x4 time and x8 space, 8 channels wide."""
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(0)
    return AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=2,
        down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8), temporal_compression_ratio=4).eval()


def tiny_image_vae():
    """An image ``AutoencoderKL`` (x2 space), decoded frame by frame (AnimateDiff-style)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                         norm_num_groups=4, layers_per_block=1).eval()
