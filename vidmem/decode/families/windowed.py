"""Base for decoders without a carryable cache: each window is one fresh decoder call.

HunyuanVideo and LTX-Video decode a whole clip in one call of their decoder; their own temporal
tiling (``use_framewise_decoding``) decodes overlapping windows and blends them linearly, keeping
every window's output on the device. The engine does the same windowing, but streams: each
window's new frames leave as soon as the next window has cross-faded its overlap.

Subclasses say how to call the decoder on one window (bypassing the VAE's own tiling, which would
otherwise kick in on the piece) and what the family's factors are.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..geometry import TimeMap
from .base import FamilyAdapter, config_value


class WindowedDecoderAdapter(FamilyAdapter):
    streaming = "window"
    clamps_output = False
    #: config keys for the temporal / spatial factors, and their defaults.
    temporal_keys: ClassVar[tuple[str, ...]] = ("temporal_compression_ratio",)
    spatial_keys: ClassVar[tuple[str, ...]] = ("spatial_compression_ratio",)
    default_temporal: ClassVar[int] = 4
    default_spatial: ClassVar[int] = 8

    @property
    def time_map(self) -> TimeMap:
        factor = getattr(self.vae, "temporal_compression_ratio", None) or config_value(
            self.vae, *self.temporal_keys, default=self.default_temporal)
        return TimeMap(int(factor), causal_first_frame=True)

    @property
    def spatial_factor(self) -> int:
        factor = getattr(self.vae, "spatial_compression_ratio", None) or config_value(
            self.vae, *self.spatial_keys, default=self.default_spatial)
        return int(factor)

    def run_decoder(self, z: torch.Tensor) -> torch.Tensor:
        """One untiled decoder call on a window (canonical latents in, canonical pixels out)."""
        raise NotImplementedError

    def decode_piece(self, z: torch.Tensor, state: None, first: bool) -> torch.Tensor:
        return self.run_decoder(z)
