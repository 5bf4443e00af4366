"""Image VAEs (``AutoencoderKL``, ``AutoencoderTiny``, ...) applied frame by frame.

AnimateDiff-style pipelines decode videos with an image VAE: frames are the batch. Frames do not
interact, so any chunking is exact; ``vae.decode`` takes ``(N, C, h, w)`` and returns
``(N, 3, H, W)``. 5-D latents ``(B, C, T, h, w)`` are accepted too (frames folded into the batch).
"""

from __future__ import annotations

import torch

from ...errors import InvalidInput
from ..geometry import TimeMap
from .base import FamilyAdapter, config_value


class ImageVAEAdapter(FamilyAdapter):
    name = "image"
    vae_classes = ("AutoencoderKL", "AutoencoderTiny", "AsymmetricAutoencoderKL", "ConsistencyDecoderVAE")
    streaming = "cache"  # no state, but chunks are exact: the "cache" is empty
    clamps_output = False
    min_tile_latent = 4
    def __init__(self, vae: torch.nn.Module, decode_kwargs: dict | None = None):
        super().__init__(vae, decode_kwargs)
        self._native_5d = False

    @property
    def time_map(self) -> TimeMap:
        return TimeMap(1, False)

    @property
    def spatial_factor(self) -> int:
        block_out = config_value(self.vae, "block_out_channels")
        if block_out is not None:
            return 2 ** (len(block_out) - 1)
        return int(config_value(self.vae, "scale_factor", default=8))

    def to_canonical(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim == 4:  # frames as batch: one video of N frames
            self._native_5d = False
            return latents.permute(1, 0, 2, 3).unsqueeze(0)
        if latents.ndim == 5:
            self._native_5d = True
            return latents
        raise InvalidInput(
            f"{type(self.vae).__name__} decodes frames as a batch (N, C, h, w) or a video "
            f"(B, C, T, h, w); got shape {tuple(latents.shape)}"
        )

    def from_canonical(self, pixels: torch.Tensor) -> torch.Tensor:
        if self._native_5d:
            return pixels
        return pixels.squeeze(0).permute(1, 0, 2, 3)

    @property
    def native_time_axis(self) -> int:  # type: ignore[override]
        return 2 if self._native_5d else 0

    def decode_piece(self, z: torch.Tensor, state: None, first: bool) -> torch.Tensor:
        b, c, t, h, w = z.shape
        frames = z.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        out = self.vae.decode(frames, **self.decode_kwargs).sample
        return out.reshape(b, t, *out.shape[1:]).permute(0, 2, 1, 3, 4)
