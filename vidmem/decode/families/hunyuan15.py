"""HunyuanVideo 1.5 (``AutoencoderKLHunyuanVideo15``): a fully causal decoder, streamed exactly.

x4 time (``4(T-1)+1`` frames), x16 space. Unlike HunyuanVideo 1.0 (GroupNorm over the whole clip),
every op of this decoder is causal in time: per-position RMS norms, causal 3D convolutions
(replicate-padded at the clip start), frame-causal attention in the mid block, and upsamplers that
treat only the clip's first frame specially. So the state that links one chunk to the next is
finite and known, and we carry it per spatial tile (see :mod:`.causal_cache`):

* each ``HunyuanVideo15CausalConv3d`` keeps the last ``k_t - 1`` frames of its input;
* each ``HunyuanVideo15AttnBlock`` keeps the keys/values of all earlier latent frames (latent
  resolution: small next to the pixels);
* each ``HunyuanVideo15Upsample`` applies its first-frame rule on the clip's first chunk only.

Concatenated chunks equal ``vae.decode`` (which tiles only spatially; diffusers has no temporal
tiling for this VAE) to float rounding.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from ..geometry import TimeMap
from .base import DecodeRun, FamilyAdapter, config_value
from .causal_cache import (CausalState, forwards_replaced, frame_causal_attention,
                           padded_causal_conv_forward)


class HunyuanVideo15Adapter(FamilyAdapter):
    name = "hunyuanvideo15"
    vae_classes = ("AutoencoderKLHunyuanVideo15",)
    default_fps = 24
    streaming = "cache"
    clamps_output = False
    # x16: 4 latent px = 64 px. The mid-block attention and 3x3 convs see a tile as the whole
    # frame, so tiles much smaller than this lose most of their context to the tile border.
    min_tile_latent = 4

    @property
    def time_map(self) -> TimeMap:
        factor = getattr(self.vae, "temporal_compression_ratio", None) or config_value(
            self.vae, "temporal_compression_ratio", default=4)
        return TimeMap(int(factor), causal_first_frame=True)

    @property
    def spatial_factor(self) -> int:
        factor = getattr(self.vae, "spatial_compression_ratio", None) or config_value(
            self.vae, "spatial_compression_ratio", default=16)
        return int(factor)

    def new_state(self, run: DecodeRun) -> CausalState:
        return CausalState()

    def decode_piece(self, z: torch.Tensor, state: CausalState, first: bool) -> torch.Tensor:
        from diffusers.models.autoencoders.autoencoder_kl_hunyuanvideo15 import (
            HunyuanVideo15AttnBlock, HunyuanVideo15CausalConv3d, HunyuanVideo15Upsample)

        if first:
            state.frames.clear()
            state.kv.clear()
            state.started = False
        replacements: dict[nn.Module, Any] = {}
        for module in self.vae.decoder.modules():
            if isinstance(module, HunyuanVideo15CausalConv3d):
                replacements[module] = functools.partial(padded_causal_conv_forward, module, state)
            elif isinstance(module, HunyuanVideo15AttnBlock):
                replacements[module] = functools.partial(_attention_forward, module, state)
            elif (isinstance(module, HunyuanVideo15Upsample) and module.add_temporal_upsample
                  and state.started):
                replacements[module] = functools.partial(_upsample_forward_continued, module)
        with forwards_replaced(replacements):
            out = self.vae.decoder(z)
        state.started = True
        return out


def _attention_forward(module: nn.Module, state: CausalState, x: torch.Tensor) -> torch.Tensor:
    """``HunyuanVideo15AttnBlock.forward`` (single-head, frame-causal) with a key/value cache."""
    identity = x
    h = module.norm(x)
    b, c, t, hh, ww = h.shape

    def tokens(y: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W) -> (B, 1, T*H*W, C)
        return y.reshape(b, c, t * hh * ww).transpose(1, 2).unsqueeze(1)

    out = frame_causal_attention(state, module, tokens(module.to_q(h)), tokens(module.to_k(h)),
                                 tokens(module.to_v(h)), hh * ww)
    out = out.squeeze(1).reshape(b, t, hh, ww, c).permute(0, 4, 1, 2, 3)
    return module.proj_out(out) + identity


def _upsample_forward_continued(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A temporal ``HunyuanVideo15Upsample.forward`` for a chunk that does not start the clip:
    every frame takes the "later frames" path (x2 in time); the first-frame path (x1 in time,
    half the channels) belongs to the clip's image frame only. Spatial-only upsamplers have no
    first-frame rule and are left alone."""
    rearrange = module._dcae_upsample_rearrange
    shortcut = rearrange(x, r1=2, r2=2, r3=2).repeat_interleave(repeats=module.repeats, dim=1)
    return rearrange(module.conv(x), r1=2, r2=2, r3=2) + shortcut
