"""Image VAEs (``AutoencoderKL``, ``AutoencoderTiny``, ...) applied frame by frame.

AnimateDiff-style pipelines decode videos with an image VAE: frames are the batch. Frames do not
interact, so any chunking is exact; ``vae.decode`` takes ``(N, C, h, w)`` and returns
``(N, 3, H, W)``. 5-D latents ``(B, C, T, h, w)`` are accepted too (frames folded into the batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import InvalidInput
from ..geometry import TimeMap
from .base import ClipFacts, FamilyAdapter, config_value


@dataclass(frozen=True, kw_only=True)
class ImageVAEFacts(ClipFacts):
    """``native_5d``: the clip came as a video ``(B, C, T, h, w)`` rather than as frames in the
    batch ``(N, C, h, w)``; its pixels go back in the same layout."""

    native_5d: bool


class ImageVAEAdapter(FamilyAdapter):
    name = "image"
    vae_classes = ("AutoencoderKL", "AutoencoderTiny", "AsymmetricAutoencoderKL", "ConsistencyDecoderVAE")
    default_fps = 8
    streaming = "cache"  # no state, but chunks are exact: the "cache" is empty
    clamps_output = False
    min_tile_latent = 4
    #: frames as the batch (4-D latents); a 5-D clip's is 2 (:class:`ImageVAEFacts`).
    native_time_axis = 0

    @property
    def time_map(self) -> TimeMap:
        return TimeMap(1, False)

    @property
    def spatial_factor(self) -> int:
        block_out = config_value(self.vae, "block_out_channels")
        if block_out is not None:
            return 2 ** (len(block_out) - 1)
        return int(config_value(self.vae, "scale_factor", default=8))

    def clip_facts(self, latents: torch.Tensor, clip_norm: bool) -> ImageVAEFacts:
        self.to_canonical(latents)  # validates the rank
        native_5d = latents.ndim == 5
        return ImageVAEFacts(time_map=self.time_map, spatial_factor=self.spatial_factor,
                             streaming=self.streaming, clip_norm=clip_norm,
                             native_time_axis=2 if native_5d else 0, native_5d=native_5d)

    def to_canonical(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim == 4:  # frames as batch: one video of N frames
            return latents.permute(1, 0, 2, 3).unsqueeze(0)
        if latents.ndim == 5:
            return latents
        raise InvalidInput(
            f"{type(self.vae).__name__} decodes frames as a batch (N, C, h, w) or a video "
            f"(B, C, T, h, w); got shape {tuple(latents.shape)}"
        )

    def from_canonical(self, pixels: torch.Tensor, facts: ClipFacts | None = None) -> torch.Tensor:
        if isinstance(facts, ImageVAEFacts) and facts.native_5d:
            return pixels
        return pixels.squeeze(0).permute(1, 0, 2, 3)

    def decode_piece(self, z: torch.Tensor, state: None, first: bool) -> torch.Tensor:
        b, c, t, h, w = z.shape
        frames = z.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        out = self.vae.decode(frames, **self.decode_kwargs).sample
        return out.reshape(b, t, *out.shape[1:]).permute(0, 2, 1, 3, 4)
