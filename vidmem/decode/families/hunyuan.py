"""HunyuanVideo (``AutoencoderKLHunyuanVideo``): causal 3D convolutions with no carried cache.

4(T-1)+1 frames, x8 in space. The decoder's mid-block attends over all frames of a call, so a
window's frames depend on everything in it; overlapping windows are re-decoded and cross-faded
(see :mod:`.windowed`). ``vae.decode`` itself switches to its own temporal tiling
(``use_framewise_decoding``, on by default) for clips over 4 latent frames; the exact reference
is a single decoder call over the whole clip.
"""

from __future__ import annotations

import torch

from .windowed import WindowedDecoderAdapter


class HunyuanVideoAdapter(WindowedDecoderAdapter):
    name = "hunyuanvideo"
    vae_classes = ("AutoencoderKLHunyuanVideo",)
    # Measured (tests/test_family_windowed.py, tiny config, 3-latent stride): 2 latents of
    # context (diffusers' own 5-latent windows) 13.1 dB vs diffusers' 13.9 dB; 3 latents of
    # context with the 8 usable overlap frames cross-faded 14.4 dB. GroupNorm statistics span the
    # whole window, so longer windows matter more than blend shape here.
    default_context_latents = 3
    default_blend_frames = 8
    min_tile_latent = 4

    def run_decoder(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decoder(self.vae.post_quant_conv(z))
