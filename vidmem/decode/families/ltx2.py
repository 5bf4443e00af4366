"""LTX-2 (``AutoencoderKLLTX2Video``): the LTX-Video decoder design with per-channel RMS norms,
residual depth-to-space upsamplers (``upsample_type`` spatial / temporal / spatiotemporal) and
reflect padding in space; x8 time (``8(T-1)+1`` frames), x32 space, optional ``temb``.

Causality is a runtime choice here: ``vae.decode(z, temb, causal=None)`` runs the decoder causally
if ``causal`` is true *or* the config says ``decoder_causal=True`` (diffusers' constructor default;
the released LTX-2 / 2.3 checkpoints set it to False). Pass ``decode_kwargs={"causal": True}`` to
mirror a causal decode. Causal decodes stream exactly with a carried cache, non-causal ones with
cross-faded windows: everything else is :class:`.ltx.LTXVideoAdapter`.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from .ltx import LTXVideoAdapter


class LTX2VideoAdapter(LTXVideoAdapter):
    name = "ltx2"
    vae_classes = ("AutoencoderKLLTX2Video",)
    _extra_kwargs: ClassVar[tuple[str, ...]] = ("causal",)
    _conv_class: ClassVar[str] = "LTX2VideoCausalConv3d"
    _upsampler_class: ClassVar[str] = "LTX2VideoUpsampler3d"

    @property
    def causal(self) -> bool:
        # Mirrors ``LTX2VideoDecoder3d.forward``: ``causal = causal or self.is_causal``.
        return bool(self.decode_kwargs.get("causal")) or bool(self.vae.decoder.is_causal)

    def run_decoder(self, z: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        return self.vae.decoder(z, temb, causal=self.causal)
