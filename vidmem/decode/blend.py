"""Blending weights: feathered spatial tile masks and temporal cross-fades.

Why weights rather than diffusers' ``blend_v``/``blend_h``: diffusers blends each tile into its
upper and left neighbour in place and then crops, which needs every tile of the row (and of the
frame range) alive at once. An accumulate-and-normalise scheme (``acc += tile * w``,
``norm += w``, ``out = acc / norm``) lets each tile be decoded, added and freed in turn, so only
one chunk's output buffer exists, and it works for any overlap the tile plan produces (including
the larger last overlap when the last tile is snapped to the edge).
"""

from __future__ import annotations

import math

import torch

from .geometry import Tile


def ramp(length: int, shape: str = "cosine") -> torch.Tensor:
    """Weights rising from near 0 to near 1 over ``length`` samples (exclusive of both ends).

    Samples sit at ``(i + 0.5) / length``, so a rising and a falling ramp over the same overlap sum
    to exactly 1 and neither tile is ever weighted 0 (which would waste its decode) or 1 (a seam).
    """
    x = (torch.arange(length, dtype=torch.float32) + 0.5) / max(length, 1)
    if shape == "linear":
        return x
    if shape == "cosine":
        return 0.5 - 0.5 * torch.cos(math.pi * x)
    raise ValueError(f"unknown blend shape {shape!r}; use 'cosine' or 'linear'")


def _axis_weights(size: int, fade_in: int, fade_out: int, shape: str) -> torch.Tensor:
    w = torch.ones(size, dtype=torch.float32)
    if fade_in > 0:
        w[:fade_in] = ramp(fade_in, shape)
    if fade_out > 0:
        w[size - fade_out:] = torch.minimum(w[size - fade_out:], ramp(fade_out, shape).flip(0))
    return w


def tile_mask(tile: Tile, feather_px: int | None = None, shape: str = "cosine") -> torch.Tensor:
    """A ``(H_tile, W_tile)`` feather mask: ramps only on sides that touch another tile.

    Each ramp spans that side's whole overlap (``feather_px=None``; tiles of the requested size
    spread evenly overlap by at least the requested overlap, often more) or at most
    ``feather_px`` pixels. Image borders keep full weight; otherwise the border pixels would be
    divided by a tiny normaliser and amplify noise.
    """
    h, w = tile.py.size, tile.px.size
    factor = h // tile.rows.size

    def side(overlap_latent: int, extent: int) -> int:
        px = overlap_latent * factor
        if feather_px is not None:
            px = min(px, feather_px)
        return min(px, extent // 2) if overlap_latent else 0

    top, bottom, left, right = tile.overlaps
    wy = _axis_weights(h, side(top, h), side(bottom, h), shape)
    wx = _axis_weights(w, side(left, w), side(right, w), shape)
    return wy[:, None] * wx[None, :]


def crossfade(length: int, shape: str = "cosine") -> torch.Tensor:
    """Weights of the *incoming* window over a ``length``-frame temporal overlap."""
    return ramp(length, shape)
