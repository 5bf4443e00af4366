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


def _axis_weights(size: int, fade_in: tuple[int, int], fade_out: tuple[int, int],
                  shape: str) -> torch.Tensor:
    """Weights along one axis of a tile: ``fade_in = (overlap, width)`` at the start, a ramp of
    ``width`` samples centred in the ``overlap`` (0 before it), and the mirror image at the end."""
    w = torch.ones(size, dtype=torch.float32)
    overlap, width = fade_in
    if overlap > 0:
        skip = (overlap - width) // 2
        w[:skip] = 0.0
        w[skip:skip + width] = ramp(width, shape)
    overlap, width = fade_out
    if overlap > 0:
        skip = (overlap - width) // 2
        falling = torch.zeros(overlap, dtype=torch.float32)  # over the same pixels as the
        falling[:skip] = 1.0                                  # neighbour's rising ramp
        falling[skip:skip + width] = ramp(width, shape).flip(0)
        w[size - overlap:] = torch.minimum(w[size - overlap:], falling)
    return w


def tile_mask(tile: Tile, feather_px: int | None = None, shape: str = "cosine") -> torch.Tensor:
    """A ``(H_tile, W_tile)`` feather mask: ramps only on sides that touch another tile.

    On each such side the ramp is centred in that side's overlap (tiles of the requested size
    spread evenly overlap by at least the requested overlap, often more) and spans the whole
    overlap (``feather_px=None``) or ``feather_px`` pixels of its middle, with weight 0 outside
    it towards the tile's edge: a tile's border pixels, decoded with the least context, are then
    left to its neighbour. The two tiles of a seam ramp over the same pixels, so their weights sum
    to 1 there. Image borders keep full weight; otherwise the border pixels would be divided by a
    tiny normaliser and amplify noise.
    """
    h, w = tile.py.size, tile.px.size
    factor = h // tile.rows.size

    def side(overlap_latent: int) -> tuple[int, int]:
        px = overlap_latent * factor
        return px, px if feather_px is None else max(1, min(px, feather_px))

    top, bottom, left, right = tile.overlaps
    wy = _axis_weights(h, side(top), side(bottom), shape)
    wx = _axis_weights(w, side(left), side(right), shape)
    return wy[:, None] * wx[None, :]


def crossfade(length: int, shape: str = "cosine") -> torch.Tensor:
    """Weights of the *incoming* window over a ``length``-frame temporal overlap."""
    return ramp(length, shape)
