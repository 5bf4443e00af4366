"""The published VAE configurations of every family vidmem supports, rebuilt in code.

Why: decode quality depends on the architecture (how many GroupNorms, how far a temporal conv
stack looks, whether attention spans a tile or the frame), so quality claims must come from the
real architectures, not from toy configs. No weights are downloaded: each VAE is built from its
published ``config.json`` values with random weights from a fixed seed, which is enough to compare
decodes of the same latents (every method sees the same network).

Sources (the ``config.json`` of each diffusers-format checkpoint, as diffusers itself writes it):

* Wan 2.1 (``Wan-AI/Wan2.1-T2V-1.3B-Diffusers`` / 14B, ``vae/``): ``AutoencoderKLWan`` class
  defaults (base_dim 96, z_dim 16, dim_mult 1/2/4/4, 2 res blocks).
* Wan 2.2 TI2V-5B (``Wan-AI/Wan2.2-TI2V-5B-Diffusers/vae``): ``vae22_diffusers_config`` in
  diffusers' ``scripts/convert_wan_to_diffusers.py`` (base_dim 160, decoder_base_dim 256, z_dim
  48, residual, 12 channels in/out, patch size 2, x16 space).
* CogVideoX (``THUDM/CogVideoX-2b/vae``; 5b differs only in ``scaling_factor``):
  ``AutoencoderKLCogVideoX`` class defaults.
* HunyuanVideo (``hunyuanvideo-community/HunyuanVideo/vae``): ``AutoencoderKLHunyuanVideo``
  class defaults (128/256/512/512, 32 groups, mid-block attention).
* HunyuanVideo 1.5 (``hunyuanvideo-community/HunyuanVideo-1.5-*``): ``AutoencoderKLHunyuanVideo15``
  class defaults (32 latent channels, 128..1024, x16 space), as written by
  ``scripts/convert_hunyuan_video1_5_to_diffusers.py``.
* LTX-Video 0.9.0 / 0.9.1 / 0.9.5 (``Lightricks/LTX-Video*``): ``get_vae_config`` in
  ``scripts/convert_ltx_to_diffusers.py`` (0.9.0 equals the class defaults).
* LTX-2 (``Lightricks/LTX-2``): ``_get_ltx2_video_vae_config("2.0")`` in
  ``scripts/convert_ltx2_to_diffusers.py``: the class defaults with ``decoder_causal=False``.
* Mochi (``genmo/mochi-1-preview/vae``): ``AutoencoderKLMochi`` class defaults.
* Stable Video Diffusion (``stabilityai/stable-video-diffusion-img2vid-xt/vae``):
  ``AutoencoderKLTemporalDecoder`` with 4 blocks of 128/256/512/512, 2 layers per block.
* SD VAE (``stable-diffusion-v1-5/stable-diffusion-v1-5/vae``, ``stabilityai/sd-vae-ft-mse``):
  ``AutoencoderKL`` with 4 down/up blocks of 128/256/512/512, 2 layers per block, 32 groups.

Only the latent size is small (so one decode takes seconds on a 2-core CPU); the architectures
are the published ones, unreduced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

#: the fixed seed every published-config VAE is initialised from.
SEED = 0


@dataclass(frozen=True)
class PublishedVAE:
    """One family's published VAE: how to build it and the latents the benchmark decodes."""

    key: str
    label: str
    cls: str
    config: dict[str, Any]
    #: latents in the layout ``vae.decode`` takes (SVD / image VAEs: frames as the batch).
    latent_shape: tuple[int, ...]
    source: str
    #: extra ``vae.decode`` arguments (LTX's decode timestep, SVD's ``num_frames``).
    decode_kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> torch.nn.Module:
        import diffusers

        torch.manual_seed(SEED)
        return getattr(diffusers, self.cls)(**self.config).eval()

    def latents(self, seed: int = 1) -> torch.Tensor:
        return torch.randn(*self.latent_shape, generator=torch.Generator().manual_seed(seed))



_WAN22 = dict(base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, in_channels=12,
              out_channels=12, patch_size=2, scale_factor_temporal=4, scale_factor_spatial=16,
              dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
              temperal_downsample=[False, True, True], dropout=0.0)

_LTX_090 = dict(in_channels=3, out_channels=3, latent_channels=128,
                block_out_channels=(128, 256, 512, 512),
                decoder_block_out_channels=(128, 256, 512, 512),
                layers_per_block=(4, 3, 3, 3, 4), decoder_layers_per_block=(4, 3, 3, 3, 4),
                spatio_temporal_scaling=(True, True, True, False),
                decoder_spatio_temporal_scaling=(True, True, True, False),
                decoder_inject_noise=(False, False, False, False, False),
                upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1),
                patch_size=4, patch_size_t=1, resnet_norm_eps=1e-6, scaling_factor=1.0,
                encoder_causal=True, decoder_causal=False, timestep_conditioning=False)

_LTX_091 = dict(in_channels=3, out_channels=3, latent_channels=128,
                block_out_channels=(128, 256, 512, 512),
                down_block_types=("LTXVideoDownBlock3D",) * 4,
                decoder_block_out_channels=(256, 512, 1024),
                layers_per_block=(4, 3, 3, 3, 4), decoder_layers_per_block=(5, 6, 7, 8),
                spatio_temporal_scaling=(True, True, True, False),
                decoder_spatio_temporal_scaling=(True, True, True),
                decoder_inject_noise=(True, True, True, False),
                downsample_type=("conv", "conv", "conv", "conv"),
                upsample_residual=(True, True, True), upsample_factor=(2, 2, 2),
                timestep_conditioning=True, patch_size=4, patch_size_t=1, resnet_norm_eps=1e-6,
                scaling_factor=1.0, encoder_causal=True, decoder_causal=False)

_LTX_095 = dict(in_channels=3, out_channels=3, latent_channels=128,
                block_out_channels=(128, 256, 512, 1024, 2048),
                down_block_types=("LTXVideo095DownBlock3D",) * 4,
                decoder_block_out_channels=(256, 512, 1024),
                layers_per_block=(4, 6, 6, 2, 2), decoder_layers_per_block=(5, 5, 5, 5),
                spatio_temporal_scaling=(True, True, True, True),
                decoder_spatio_temporal_scaling=(True, True, True),
                decoder_inject_noise=(False, False, False, False),
                downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
                upsample_residual=(True, True, True), upsample_factor=(2, 2, 2),
                timestep_conditioning=True, patch_size=4, patch_size_t=1, resnet_norm_eps=1e-6,
                scaling_factor=1.0, encoder_causal=True, decoder_causal=False,
                spatial_compression_ratio=32, temporal_compression_ratio=8)

_LTX2 = dict(in_channels=3, out_channels=3, latent_channels=128,
             block_out_channels=(256, 512, 1024, 2048),
             down_block_types=("LTX2VideoDownBlock3D",) * 4,
             decoder_block_out_channels=(256, 512, 1024),
             layers_per_block=(4, 6, 6, 2, 2), decoder_layers_per_block=(5, 5, 5, 5),
             spatio_temporal_scaling=(True, True, True, True),
             decoder_spatio_temporal_scaling=(True, True, True),
             decoder_inject_noise=(False, False, False, False),
             downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
             upsample_residual=(True, True, True), upsample_factor=(2, 2, 2),
             timestep_conditioning=False, patch_size=4, patch_size_t=1, resnet_norm_eps=1e-6,
             encoder_causal=True, decoder_causal=False, encoder_spatial_padding_mode="zeros",
             decoder_spatial_padding_mode="reflect", spatial_compression_ratio=32,
             temporal_compression_ratio=8)

_IMAGE_2D = dict(in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512),
                 layers_per_block=2, latent_channels=4, scaling_factor=0.18215)

_TEMB = {"temb": 0.05}  # LTX pipelines' default decode_timestep

PUBLISHED: dict[str, PublishedVAE] = {v.key: v for v in [
    PublishedVAE("wan21", "Wan 2.1", "AutoencoderKLWan", {}, (1, 16, 5, 12, 16),
                 "class defaults (Wan-AI/Wan2.1-T2V-*-Diffusers vae/config.json)"),
    PublishedVAE("wan22", "Wan 2.2 TI2V-5B", "AutoencoderKLWan", _WAN22, (1, 48, 5, 6, 8),
                 "scripts/convert_wan_to_diffusers.py vae22_diffusers_config"),
    PublishedVAE("cogvideox", "CogVideoX", "AutoencoderKLCogVideoX", {}, (1, 16, 5, 12, 16),
                 "class defaults (THUDM/CogVideoX-2b vae/config.json)"),
    PublishedVAE("hunyuanvideo", "HunyuanVideo", "AutoencoderKLHunyuanVideo", {},
                 (1, 16, 5, 12, 16),
                 "class defaults (hunyuanvideo-community/HunyuanVideo vae/config.json)"),
    PublishedVAE("hunyuanvideo15", "HunyuanVideo 1.5", "AutoencoderKLHunyuanVideo15", {},
                 (1, 32, 5, 6, 8), "class defaults (convert_hunyuan_video1_5_to_diffusers.py)"),
    PublishedVAE("ltx090", "LTX-Video 0.9.0", "AutoencoderKLLTXVideo", _LTX_090,
                 (1, 128, 4, 6, 8), "convert_ltx_to_diffusers.py get_vae_config('0.9.0')"),
    PublishedVAE("ltx091", "LTX-Video 0.9.1", "AutoencoderKLLTXVideo", _LTX_091,
                 (1, 128, 4, 6, 8), "convert_ltx_to_diffusers.py get_vae_config('0.9.1')",
                 _TEMB),
    PublishedVAE("ltx095", "LTX-Video 0.9.5", "AutoencoderKLLTXVideo", _LTX_095,
                 (1, 128, 4, 6, 8), "convert_ltx_to_diffusers.py get_vae_config('0.9.5')",
                 _TEMB),
    PublishedVAE("ltx2", "LTX-2", "AutoencoderKLLTX2Video", _LTX2, (1, 128, 4, 6, 8),
                 "convert_ltx2_to_diffusers.py _get_ltx2_video_vae_config('2.0')"),
    PublishedVAE("mochi", "Mochi", "AutoencoderKLMochi", {}, (1, 12, 4, 12, 16),
                 "class defaults (genmo/mochi-1-preview vae/config.json)"),
    PublishedVAE("svd", "SVD", "AutoencoderKLTemporalDecoder",
                 dict(_IMAGE_2D, down_block_types=("DownEncoderBlock2D",) * 4),
                 (14, 4, 12, 16), "stabilityai/stable-video-diffusion-img2vid-xt vae/config.json",
                 {"num_frames": 14}),
    PublishedVAE("sdvae", "SD VAE", "AutoencoderKL",
                 dict(_IMAGE_2D, down_block_types=("DownEncoderBlock2D",) * 4,
                      up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32,
                      sample_size=512),
                 (8, 4, 12, 16), "stable-diffusion-v1-5 vae/config.json (sd-vae-ft-mse)"),
]}


def build(key: str) -> tuple[torch.nn.Module, torch.Tensor, dict[str, Any]]:
    """(vae, latents, decode_kwargs) for one published family."""
    spec = PUBLISHED[key]
    kwargs = dict(spec.decode_kwargs)
    if "temb" in kwargs:
        kwargs["temb"] = torch.tensor([float(kwargs["temb"])])
    return spec.build(), spec.latents(), kwargs
