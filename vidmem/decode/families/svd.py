"""Stable Video Diffusion's temporal decoder (``AutoencoderKLTemporalDecoder``).

``decode(z, num_frames)`` takes frames as the batch, ``(B * F, C, h, w)``, one pixel frame per
latent frame, and mixes frames inside each call (temporal convolutions and time-mixing blocks).
The SVD pipeline's ``decode_chunk_size`` decodes independent chunks with no overlap, so every
chunk boundary is a visible temporal seam. We decode overlapping windows instead: each window
re-decodes ``context_latents`` frames of the previous one; the earlier part of that overlap is
discarded as warm-up and the last ``blend_frames`` are cross-faded (by default the whole
overlap: cross-fading measured better than discarding).

``num_frames`` (frames per video) comes from ``decode_kwargs`` as it does for ``vae.decode``;
without it the whole batch is taken as one video.
"""

from __future__ import annotations

import torch

from ...errors import InvalidInput
from ..geometry import TimeMap
from .base import ClipFacts, FamilyAdapter, config_value


class SVDTemporalAdapter(FamilyAdapter):
    name = "svd"
    vae_classes = ("AutoencoderKLTemporalDecoder",)
    default_fps = 7
    streaming = "window"
    clamps_output = False
    # Measured (tests/test_family_svd.py; 24 frames, 8-frame chunks, PSNR vs full decode): SVD's
    # own chunks 29.8 dB; 4 frames of context discarded 34.4 dB; cross-faded 42.9 dB.
    default_context_latents = 4
    default_blend_frames = 4
    min_tile_latent = 4
    native_time_axis = 0

    @property
    def time_map(self) -> TimeMap:
        return TimeMap(1, causal_first_frame=False)

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(config_value(self.vae, "block_out_channels", default=(0,))) - 1)

    def to_canonical(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim != 4:
            raise InvalidInput(f"AutoencoderKLTemporalDecoder decodes frames as a batch "
                             f"(B * F, C, h, w); got shape {tuple(latents.shape)}")
        frames = int(self.decode_kwargs.get("num_frames", latents.shape[0]))
        if latents.shape[0] % frames:
            raise InvalidInput(f"num_frames={frames} does not divide the batch of "
                             f"{latents.shape[0]} latent frames")
        b = latents.shape[0] // frames
        return latents.reshape(b, frames, *latents.shape[1:]).permute(0, 2, 1, 3, 4)

    def example_latents(self, t: int, h: int, w: int, device: str = "meta") -> torch.Tensor:
        channels = config_value(self.vae, "latent_channels", default=4)
        return torch.empty(t, int(channels), h, w, device=device)

    def from_canonical(self, pixels: torch.Tensor, facts: ClipFacts | None = None) -> torch.Tensor:
        b, c, t, h, w = pixels.shape
        return pixels.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)

    def decode_piece(self, z: torch.Tensor, state: None, first: bool) -> torch.Tensor:
        b, c, t, h, w = z.shape
        frames = z.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        kwargs = {k: v for k, v in self.decode_kwargs.items() if k != "num_frames"}
        out = self.vae.decode(frames, num_frames=t, **kwargs).sample
        return out.reshape(b, t, *out.shape[1:]).permute(0, 2, 1, 3, 4)
