"""Wan 2.1 / 2.2 (``AutoencoderKLWan``): a causal decoder with a per-conv feature cache.

The Wan decoder is fed one latent frame at a time; each ``WanCausalConv3d`` keeps the last two
input frames of its previous call in a list slot (``feat_cache``) and the upsamplers mark their
first call with ``"Rep"``. ``vae._decode`` keeps that list on the VAE and clears it per call; we
keep one list per spatial tile instead and never clear it between chunks, so decoding chunk by
chunk is numerically the same computation as the full decode. Wan 2.2 (``patch_size=2``) decodes
to 12 channels at half resolution and unpatchifies at the end, which we do per piece.
"""

from __future__ import annotations

from typing import Any

import torch

from ..geometry import TimeMap
from .base import DecodeRun, FamilyAdapter, config_value


class WanAdapter(FamilyAdapter):
    name = "wan"
    vae_classes = ("AutoencoderKLWan",)
    default_fps = 16
    streaming = "cache"
    clamps_output = True
    min_tile_latent = 4

    @property
    def time_map(self) -> TimeMap:
        return TimeMap(int(config_value(self.vae, "scale_factor_temporal", default=4)), True)

    @property
    def spatial_factor(self) -> int:
        return int(config_value(self.vae, "scale_factor_spatial", default=8))

    def _decoder_conv_count(self) -> int:
        counts = getattr(self.vae, "_cached_conv_counts", None)
        if counts and "decoder" in counts:
            return int(counts["decoder"])
        from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

        return sum(isinstance(m, WanCausalConv3d) for m in self.vae.decoder.modules())

    def new_state(self, run: DecodeRun) -> list[Any]:
        return [None] * self._decoder_conv_count()

    def decode_piece(self, z: torch.Tensor, state: list[Any], first: bool) -> torch.Tensor:
        x = self.vae.post_quant_conv(z)
        # The decoder yields one latent frame's pixel frames per call (1 for the clip's first
        # latent, ``factor`` after it). Each is copied into one buffer allocated at the first
        # call, instead of a list then ``torch.cat``, which holds every frame twice at the end.
        tm = self.time_map
        total = tm.pixel_frames(x.shape[2]) if first else tm.factor * x.shape[2]
        out, filled = None, 0
        for i in range(x.shape[2]):
            part = self.vae.decoder(x[:, :, i:i + 1], feat_cache=state, feat_idx=[0],
                                    first_chunk=first and i == 0)
            if out is None:
                out = part.new_empty((*part.shape[:2], total, *part.shape[3:]))
            out[:, :, filled:filled + part.shape[2]] = part
            filled += part.shape[2]
            del part
        if filled != total:
            raise RuntimeError(f"Wan decoder produced {filled} frames for {x.shape[2]} latent "
                               f"frames, expected {total}")
        patch = config_value(self.vae, "patch_size")
        if patch is not None:
            from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

            out = unpatchify(out, patch_size=patch)
        return out
