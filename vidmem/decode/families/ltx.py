"""LTX-Video (``AutoencoderKLLTXVideo``): x8 time (8(T-1)+1 frames), x32 space, and a decoder
that may be conditioned on a timestep (``temb``) when ``timestep_conditioning`` is set.

No cache to carry: windows overlap and cross-fade (see :mod:`.windowed`). The decode timestep
given to ``vae.decode(z, temb)`` is passed as ``decode_kwargs={"temb": t}`` and reaches every
window.
"""

from __future__ import annotations

import torch

from .windowed import WindowedDecoderAdapter


class LTXVideoAdapter(WindowedDecoderAdapter):
    name = "ltx"
    vae_classes = ("AutoencoderKLLTXVideo",)
    default_temporal = 8
    default_spatial = 32
    # Measured on a tiny config (tests/test_family_ltx.py): two latents of context, the whole
    # usable overlap cross-faded, beat diffusers' own temporal tiling at the same window geometry.
    default_context_latents = 2
    default_blend_frames = 8
    min_tile_latent = 2

    def run_decoder(self, z: torch.Tensor) -> torch.Tensor:
        temb = self.decode_kwargs.get("temb")
        return self.vae.decoder(z, temb)
