"""Fallback for a VAE vidmem has no adapter for: overlapping temporal windows over ``decode``.

It assumes 5-D latents and a ``decode(z).sample`` of 5-D pixels, and learns the temporal rule by
decoding two tiny probes (2 and 3 latent frames on a 2x2 latent patch): the difference in output
frames is the temporal factor, and whether 2 latents give ``factor + 1`` frames says if the first
latent frame is causal. Windows overlap and cross-fade, which is approximate; the engine says so
once.
"""

from __future__ import annotations

import torch

from ..geometry import TimeMap
from .base import ClipFacts, FamilyAdapter, config_value


class GenericAdapter(FamilyAdapter):
    name = "generic"
    streaming = "window"
    default_context_latents = 2
    default_blend_frames = 4
    min_tile_latent = 8

    @classmethod
    def matches(cls, vae: torch.nn.Module) -> bool:
        return callable(getattr(vae, "decode", None))

    def probe(self, latents: torch.Tensor) -> tuple[TimeMap, int]:
        """Decode tiny slices of canonical ``latents`` to learn the time map and the spatial
        factor (what the planner keeps in the clip's facts)."""
        sh, sw = min(2, latents.shape[3]), min(2, latents.shape[4])
        param = next(self.vae.parameters(), None)
        device = param.device if param is not None else latents.device
        dtype = param.dtype if param is not None else latents.dtype
        frames = []
        with torch.no_grad():
            for n in (2, 3):
                n = min(n, latents.shape[2])
                z = latents[:1, :, :n, :sh, :sw].to(device, dtype)
                out = self.vae.decode(z, **self.decode_kwargs).sample
                frames.append((n, out.shape[2], out.shape[3] // sh))
        (n2, f2, s), (n3, f3, _) = frames
        factor = max(1, (f3 - f2) // max(1, n3 - n2)) if n3 > n2 else \
            int(config_value(self.vae, "temporal_compression_ratio", "scale_factor_temporal", default=1))
        causal = f2 == factor * (n2 - 1) + 1 and factor > 1
        return TimeMap(factor, causal), max(1, s)

    def clip_facts(self, latents: torch.Tensor, clip_norm: bool) -> ClipFacts:
        time_map, spatial = self.probe(self.to_canonical(latents))
        return ClipFacts(time_map=time_map, spatial_factor=spatial,
                         streaming=self.streaming_for(clip_norm), clip_norm=clip_norm,
                         native_time_axis=self.native_time_axis)

    @property
    def time_map(self) -> TimeMap:
        raise RuntimeError("the generic adapter learns the time map per clip, by probing: read "
                           "it from the decode plan (plan.facts.time_map)")

    @property
    def spatial_factor(self) -> int:
        raise RuntimeError("the generic adapter learns the spatial factor per clip, by probing: "
                           "read it from the decode plan (plan.facts.spatial_factor)")

    def decode_piece(self, z: torch.Tensor, state: None, first: bool) -> torch.Tensor:
        return self.vae.decode(z, **self.decode_kwargs).sample
