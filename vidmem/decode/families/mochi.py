"""Mochi 1 (``AutoencoderKLMochi``): a causal decoder, streamed exactly by carrying conv inputs.

x6 time, x8 space (products of the config's ``temporal_expansions`` / ``spatial_expansions``).
``vae.decode`` takes the latents as they are (the pipeline un-normalises them with ``latents_mean``
/ ``latents_std`` / ``scaling_factor`` *before* calling it), so the adapter applies no scaling.

What the decoder does across time, and why chunking it is exact:

* ``conv_in`` (1x1x1), ``MochiChunkedGroupNorm3D`` (a GroupNorm per frame: it folds time into the
  batch), the activations, the ``proj`` linear layers and ``proj_out`` are all per frame;
* each ``MochiUpBlock3D`` ends in a depth-to-space shuffle that turns every frame into
  ``temporal_expansion`` frames: per frame too, with no first-frame rule inside the decoder;
* the decoder has no attention (``add_attention=False`` in all its mid blocks; the causal
  attention is in the encoder only);
* the only ops that look back in time are the ``CogVideoXCausalConv3d`` (kernel 3, stride 1):
  in their default ``pad_mode="replicate"`` they pad two copies of the call's first frame in front
  (and replicate-pad space) and return no cache.

So ``T`` latents decode to ``6T`` frames, and ``vae._decode`` drops the first ``6 - 1`` of them
(``drop_last_temporal_frames``, on by default): ``6(T-1)+1`` frames, latent 0 giving one. The
decoder's own ``conv_cache`` cannot be used to stream: only ``pad_mode="constant"`` convs fill it,
and ``vae._enable_framewise_decoding()`` switches the decoder's convs to that mode although they
were built for replicate mode (``padding=0``, space padded by ``F.pad``), so they then pad space
not at all and diffusers' framewise decode fails ("Kernel size can't be greater than actual input
size", diffusers 0.42.1). Instead each causal conv gets a stateful ``forward`` (see
:mod:`.causal_cache`) that takes its two time-padding frames from the end of the previous chunk's
input, per spatial tile, and pads space exactly as the module does.

The reference we match is one ``vae.decode(latents)`` call without tiling (the one-shot path,
``use_framewise_decoding=False``, i.e. ``vae.decoder(z)`` with the first 5 frames dropped):
concatenated chunks equal it to float rounding for any chunk size.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry import TimeMap
from .base import DecodeRun, FamilyAdapter, config_value
from .causal_cache import CausalState, causal_time_input, forwards_replaced


class MochiAdapter(FamilyAdapter):
    name = "mochi"
    vae_classes = ("AutoencoderKLMochi",)
    default_fps = 30
    streaming = "cache"
    clamps_output = False
    min_tile_latent = 4

    @property
    def _drops_leading_frames(self) -> bool:
        """``vae.drop_last_temporal_frames``: whether latent 0 yields 1 frame (default) or 6."""
        return bool(getattr(self.vae, "drop_last_temporal_frames", True))

    @property
    def time_map(self) -> TimeMap:
        factor = getattr(self.vae, "temporal_compression_ratio", None) or math.prod(
            config_value(self.vae, "temporal_expansions", default=(1, 2, 3)))
        return TimeMap(int(factor), causal_first_frame=self._drops_leading_frames)

    @property
    def spatial_factor(self) -> int:
        factor = getattr(self.vae, "spatial_compression_ratio", None) or math.prod(
            config_value(self.vae, "spatial_expansions", default=(2, 2, 2)))
        return int(factor)

    def new_state(self, run: DecodeRun) -> CausalState:
        return CausalState()

    def decode_piece(self, z: torch.Tensor, state: CausalState, first: bool) -> torch.Tensor:
        from diffusers.models.autoencoders.autoencoder_kl_cogvideox import CogVideoXCausalConv3d

        if first:
            state.frames.clear()
        replacements: dict[nn.Module, Any] = {
            module: functools.partial(_conv_forward, module, state)
            for module in self.vae.decoder.modules() if isinstance(module, CogVideoXCausalConv3d)
        }
        with forwards_replaced(replacements):
            out, _ = self.vae.decoder(z)
        if first and self._drops_leading_frames:
            # vae._decode drops ratio - 1 frames from the start of the clip (only): latent 0's
            # ``ratio`` frames become one, as in the causal families.
            out = out[:, :, self.time_map.factor - 1:]
        return out


def _conv_forward(module: nn.Module, state: CausalState, x: torch.Tensor,
                  conv_cache: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
    """``CogVideoXCausalConv3d.forward`` with the time padding taken from the carried state.

    Both pad modes put ``k_t - 1`` copies of the call's first frame in front on a fresh start
    (``"replicate"`` via ``F.pad``, ``"constant"`` via its cache fallback); later chunks use the
    previous chunk's last input frames instead. ``"replicate"`` then pads space by replication
    (separable from the time pad, so padding time first gives the same tensor); ``"constant"``
    convs pad space inside ``module.conv`` (zeros) if they were built that way. The decoder's own
    ``conv_cache`` argument is ignored: the state is ours. Returns no cache, so the decoder keeps
    nothing between calls.
    """
    if module.conv.stride[0] != 1 or module.conv.dilation[0] != 1:
        raise NotImplementedError("Mochi streaming assumes temporal stride and dilation 1 in the "
                                  "decoder's causal convolutions")

    def pad_first(t: torch.Tensor, n: int) -> torch.Tensor:  # the n frames the module pads with
        return t[:, :, :1].expand(-1, -1, n, -1, -1)

    xt = causal_time_input(state, module, x, module.time_kernel_size, pad_first)
    if module.pad_mode == "replicate":
        xt = F.pad(xt, (module.width_pad, module.width_pad, module.height_pad, module.height_pad,
                        0, 0), mode="replicate")
    return module.conv(xt), None
