"""HunyuanVideo (``AutoencoderKLHunyuanVideo``): a causal decoder whose GroupNorms span the clip.

4(T-1)+1 frames, x8 in space. Every op of this decoder is causal in time (causal 3D convolutions,
replicate-padded at the clip start; frame-causal attention in the mid block; upsamplers that treat
only the clip's first frame specially) *except* its ``GroupNorm`` layers, which normalize over all
frames and pixels of a decoder call. Two ways to stream it:

* **whole-clip statistics** (the default, ``whole_clip_norm=True``): a first streaming pass
  gathers every GroupNorm's statistics over the whole clip (:mod:`vidmem.decode.clip_norm`), then
  a second pass decodes with those statistics and the causal state carried per tile, exactly as
  HunyuanVideo 1.5 is streamed (:mod:`.causal_cache`): conv tails, the attention's keys and
  values, and the upsamplers' first-frame rule. With the statistics fixed the decoder is causal,
  so the chunks reproduce one decoder call over the clip up to the statistics' estimate.
* **overlapping windows** (``whole_clip_norm=False``): each window is one fresh decoder call, its
  statistics its own; windows re-decode context and are cross-faded (see :mod:`.windowed`).

``vae.decode`` itself switches to its own temporal tiling (``use_framewise_decoding``, on by
default) for clips over 4 latent frames; the exact reference is one decoder call over the clip.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import DecodeRun, Streaming
from .causal_cache import (CausalState, forwards_replaced, frame_causal_attention,
                           padded_causal_conv_forward)
from .windowed import WindowedDecoderAdapter


class HunyuanVideoAdapter(WindowedDecoderAdapter):
    name = "hunyuanvideo"
    vae_classes = ("AutoencoderKLHunyuanVideo",)
    default_fps = 24
    supports_clip_norm = True
    clip_norm_default = True
    # Window mode (whole_clip_norm=False), measured on the published config (benchmarks/
    # RESULTS.md): GroupNorm statistics span the window, so longer windows matter more than
    # blend shape; 3 latents of context with the 8 usable overlap frames cross-faded.
    default_context_latents = 3
    default_blend_frames = 8
    min_tile_latent = 4

    @property
    def streaming(self) -> Streaming:  # type: ignore[override]
        """The family's default (with whole-clip statistics); a clip's own is in its facts."""
        return self.streaming_for(self.clip_norm_default)

    def streaming_for(self, clip_norm: bool) -> Streaming:
        return "cache" if clip_norm else "window"

    def clip_norm_modules(self) -> list[nn.Module]:
        return [m for m in self.vae.decoder.modules() if isinstance(m, nn.GroupNorm)]

    def new_state(self, run: DecodeRun) -> CausalState | None:
        return CausalState() if run.facts.clip_norm else None

    def run_decoder(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decoder(self.vae.post_quant_conv(z))

    def decode_piece(self, z: torch.Tensor, state: CausalState | None, first: bool) -> torch.Tensor:
        if state is None:
            return self.run_decoder(z)
        from diffusers.models.attention_processor import Attention
        from diffusers.models.autoencoders.autoencoder_kl_hunyuan_video import (
            HunyuanVideoCausalConv3d, HunyuanVideoUpsampleCausal3D)

        if first:
            state.frames.clear()
            state.kv.clear()
            state.started = False
        tokens_per_frame = z.shape[-2] * z.shape[-1]  # the mid block runs at latent resolution
        replacements: dict[nn.Module, Any] = {}
        for module in self.vae.decoder.modules():
            if isinstance(module, HunyuanVideoCausalConv3d):
                replacements[module] = functools.partial(padded_causal_conv_forward, module, state)
            elif isinstance(module, Attention):
                replacements[module] = functools.partial(_attention_forward, module, state,
                                                         tokens_per_frame)
            elif isinstance(module, HunyuanVideoUpsampleCausal3D) and state.started:
                replacements[module] = functools.partial(_upsample_forward_continued, module)
        try:
            with forwards_replaced(replacements):
                return self.run_decoder(z)
        finally:  # also when a statistics pass stops the decoder early: the chunk was seen
            state.started = True


def _attention_forward(module: nn.Module, state: CausalState, tokens_per_frame: int,
                       hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       **_: Any) -> torch.Tensor:
    """The mid block's ``Attention`` (diffusers' ``AttnProcessor2_0`` path: group norm, q/k/v,
    multi-head SDPA, output projection, residual) with frame-causal attention over a key/value
    cache instead of the block's causal mask, which it replaces (so ``attention_mask`` is unused).
    """
    if (module.spatial_norm is not None or module.norm_q is not None or module.norm_k is not None
            or module.is_cross_attention):
        raise NotImplementedError("HunyuanVideo attention with extra norms or cross-attention")
    residual = hidden_states
    b = hidden_states.shape[0]
    h = module.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    q, k, v = module.to_q(h), module.to_k(h), module.to_v(h)
    head_dim = k.shape[-1] // module.heads

    def heads(t: torch.Tensor) -> torch.Tensor:  # (B, L, C) -> (B, heads, L, head_dim)
        return t.view(b, -1, module.heads, head_dim).transpose(1, 2)

    out = frame_causal_attention(state, module, heads(q), heads(k), heads(v), tokens_per_frame)
    out = out.transpose(1, 2).reshape(b, -1, module.heads * head_dim).to(q.dtype)
    out = module.to_out[1](module.to_out[0](out))
    if module.residual_connection:
        out = out + residual
    return out / module.rescale_output_factor


def _upsample_forward_continued(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``HunyuanVideoUpsampleCausal3D.forward`` for a chunk that does not start the clip: every
    frame takes the "other frames" path (nearest upsampling in time and space); the first-frame
    path (space only) belongs to the clip's image frame."""
    up = F.interpolate(x.contiguous(), scale_factor=module.upsample_factor, mode="nearest")
    return module.conv(up)
