"""CogVideoX (``AutoencoderKLCogVideoX``): a causal decoder with an explicit ``conv_cache``.

``vae._decode`` feeds the decoder batches of two latent frames (the first batch takes three when
the clip has an odd number of latents), threading ``conv_cache`` from batch to batch. The temporal
upsamplers treat an odd-sized batch's first frame as an image frame, so T odd gives 4(T-1)+1
frames and T even gives 4T. Feeding the same batches in the same order, with the cache kept per
spatial tile and carried across chunks, reproduces the full decode exactly; chunk boundaries are
therefore placed on batch boundaries (:meth:`chunk_spans`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..geometry import Span, TimeMap
from .base import ClipFacts, DecodeRun, FamilyAdapter, config_value


@dataclass(frozen=True, kw_only=True)
class CogVideoXFacts(ClipFacts):
    """``first_batch_odd``: the clip's latent count leaves a remainder, so ``vae._decode``'s first
    frame batch takes one frame more and the temporal upsamplers treat the clip's first frame as
    an image frame (``4(T-1)+1`` frames); else every batch is even (``4T`` frames)."""

    first_batch_odd: bool


class CogVideoXAdapter(FamilyAdapter):
    name = "cogvideox"
    vae_classes = ("AutoencoderKLCogVideoX",)
    default_fps = 8
    streaming = "cache"
    clamps_output = False
    min_tile_latent = 4

    @property
    def batch(self) -> int:
        return int(getattr(self.vae, "num_latent_frames_batch_size", 2))

    def first_batch_odd(self, latent_frames: int) -> bool:
        """Whether a clip of ``latent_frames`` gets an odd first batch (:class:`CogVideoXFacts`)."""
        return latent_frames % self.batch == 1 or latent_frames == 1

    def _time_map(self, odd: bool) -> TimeMap:
        factor = int(config_value(self.vae, "temporal_compression_ratio", default=4))
        return TimeMap(factor, causal_first_frame=odd)

    @property
    def time_map(self) -> TimeMap:
        """The time map of a clip with an odd first batch (the released pipelines' 13 latent
        frames); a clip's own is in its facts."""
        return self._time_map(True)

    def clip_facts(self, latents: torch.Tensor, clip_norm: bool) -> CogVideoXFacts:
        odd = self.first_batch_odd(self.to_canonical(latents).shape[2])
        return CogVideoXFacts(time_map=self._time_map(odd), spatial_factor=self.spatial_factor,
                              streaming=self.streaming, clip_norm=clip_norm,
                              native_time_axis=self.native_time_axis, first_batch_odd=odd)

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(config_value(self.vae, "block_out_channels", default=(0, 0, 0, 0))) - 1)

    def _batches(self, latent_frames: int) -> list[Span]:
        """The frame batches ``vae._decode`` uses: 2, 2, ... with the remainder in the first."""
        b = self.batch
        n = max(latent_frames // b, 1)
        rem = latent_frames % b
        return [Span(0 if i == 0 else b * i + rem, b * (i + 1) + rem) for i in range(n)]

    def chunk_spans(self, latent_frames: int, chunk_latents: int) -> list[Span]:
        spans: list[Span] = []
        for batch in self._batches(latent_frames):
            if spans and spans[-1].size + batch.size <= max(chunk_latents, batch.size) \
                    and spans[-1].size < chunk_latents:
                spans[-1] = Span(spans[-1].start, batch.stop)
            else:
                spans.append(batch)
        return spans

    def new_state(self, run: DecodeRun) -> dict[str, Any]:
        odd = run.facts.first_batch_odd if isinstance(run.facts, CogVideoXFacts) else True
        return {"conv_cache": None, "first_batch_odd": odd}

    def decode_piece(self, z: torch.Tensor, state: dict[str, Any], first: bool) -> torch.Tensor:
        b = self.batch
        sizes = []
        remaining = z.shape[2]
        if first and state["first_batch_odd"] and remaining > 1:
            sizes.append(b + 1 if remaining >= b + 1 else remaining)
            remaining -= sizes[-1]
        while remaining > 0:
            sizes.append(min(b, remaining))
            remaining -= sizes[-1]
        outs, start = [], 0
        for size in sizes:
            piece = z[:, :, start:start + size]
            start += size
            if self.vae.post_quant_conv is not None:
                piece = self.vae.post_quant_conv(piece)
            out, state["conv_cache"] = self.vae.decoder(piece, conv_cache=state["conv_cache"])
            outs.append(out)
        return torch.cat(outs, dim=2)
