"""Decode geometry: which latent frames and which latent pixels each decode call sees.

Why a separate module: chunk and tile plans are pure arithmetic. Keeping them free of torch
modules means they can be printed, unit-tested and reasoned about without a model, and every VAE
family shares one implementation of the fiddly index maths (snapping the last tile to the edge,
mapping latent frames to pixel frames under the causal first-frame rule).

Units. Users speak in *pixel* frames and *pixels* (what they see in the video); the decoder works
in *latent* frames and latent pixels. With temporal factor ``t`` and spatial factor ``s``:

* causal families (Wan, CogVideoX, HunyuanVideo, LTX, Mochi): latent frame 0 decodes to 1 pixel
  frame, every later latent frame to ``t`` frames, so ``T`` latents give ``t*(T-1)+1`` frames and
  latent ``i >= 1`` covers pixel frames ``[t*(i-1)+1, t*i+1)``;
* non-causal families (image VAEs framewise, SVD): latent ``i`` covers ``[t*i, t*(i+1))``;
* a latent pixel ``y`` covers pixels ``[s*y, s*(y+1))``.

Pixel sizes given by the user are rounded *down* to whole latent units (at least one).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TimeMap:
    """How latent frames map to pixel frames for one VAE family."""

    factor: int
    causal_first_frame: bool

    def pixel_frames(self, latent_frames: int) -> int:
        """Number of pixel frames that ``latent_frames`` latent frames decode to."""
        if latent_frames <= 0:
            return 0
        if self.causal_first_frame:
            return self.factor * (latent_frames - 1) + 1
        return self.factor * latent_frames

    def pixel_start(self, latent_index: int) -> int:
        """First pixel frame produced by latent frame ``latent_index`` in a full decode."""
        if self.causal_first_frame:
            return 0 if latent_index == 0 else self.factor * (latent_index - 1) + 1
        return self.factor * latent_index

    def latent_frames_for(self, pixel_frames: int) -> int:
        """Latent frames whose decode covers ``pixel_frames`` frames (the inverse, rounded up)."""
        if pixel_frames <= 0:
            return 0
        if self.causal_first_frame:
            return (pixel_frames - 1 + self.factor - 1) // self.factor + 1
        return (pixel_frames + self.factor - 1) // self.factor

    def window_offset(self, first_latent: int) -> int:
        """Global pixel index of the first frame of a decode that *starts* at ``first_latent``.

        A causal decoder treats the first latent of any call as an image frame and gives it one
        pixel frame; that frame lines up with the *last* of the ``factor`` frames the same latent
        gives in a full decode, i.e. global index ``factor * first_latent``. Non-causal decoders
        line up trivially.
        """
        return self.factor * first_latent


@dataclass(frozen=True)
class Span:
    """A half-open range ``[start, stop)``."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def as_slice(self) -> slice:
        return slice(self.start, self.stop)


def split_even(total: int, size: int) -> list[Span]:
    """Cut ``[0, total)`` into consecutive non-overlapping spans of at most ``size``."""
    if total <= 0:
        return []
    size = max(1, size)
    return [Span(a, min(a + size, total)) for a in range(0, total, size)]


def overlapping_tiles(total: int, tile: int, overlap: int) -> list[Span]:
    """Cover ``[0, total)`` with spans of exactly ``tile``, overlapping by at least ``overlap``.

    The fewest tiles of the requested size that cover ``total`` with that overlap are spread
    evenly, so the remainder goes into the overlaps (every seam gets about the same overlap, at
    least the one asked for). Tiles keep the size asked for because a tile's quality grows with
    its size (more context for every pixel, and for decoders whose norms or attention span the
    tile, statistics closer to the whole frame's); shrinking them to the smallest equal size that
    covers, as vidmem used to, lost up to 0.6 dB against diffusers' full-size tiles. Compared with
    stepping by ``tile - overlap`` and truncating (diffusers), no tile is a sliver with too little
    context and no decoded pixel is thrown away.
    """
    if tile >= total:
        return [Span(0, total)]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap {overlap} must be >= 0 and smaller than the tile ({tile})")
    count = -(-(total - overlap) // (tile - overlap))
    starts = [round(i * (total - tile) / (count - 1)) for i in range(count)]
    return [Span(s, s + tile) for s in starts]


@dataclass(frozen=True)
class Tile:
    """One spatial tile, in latent pixels (``rows``/``cols``) and output pixels (``py``/``px``)."""

    rows: Span
    cols: Span
    py: Span
    px: Span
    #: the overlap, in latent pixels, with the neighbouring tile on each side (top, bottom, left,
    #: right); 0 where the side is the frame's border.
    overlaps: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def neighbours(self) -> tuple[bool, bool, bool, bool]:
        """Which sides border another tile (and are therefore feathered)."""
        top, bottom, left, right = self.overlaps
        return top > 0, bottom > 0, left > 0, right > 0


def plan_tiles(latent_h: int, latent_w: int, spatial_factor: int,
               tile_latent: int | None, overlap_latent: int) -> list[Tile]:
    """Spatial tiles covering a ``latent_h x latent_w`` latent frame (one tile if untiled)."""
    if tile_latent is None:
        row_spans = [Span(0, latent_h)]
        col_spans = [Span(0, latent_w)]
    else:
        row_spans = overlapping_tiles(latent_h, tile_latent, overlap_latent)
        col_spans = overlapping_tiles(latent_w, tile_latent, overlap_latent)
    tiles = []
    for i, r in enumerate(row_spans):
        for j, c in enumerate(col_spans):
            tiles.append(Tile(
                rows=r, cols=c,
                py=Span(r.start * spatial_factor, r.stop * spatial_factor),
                px=Span(c.start * spatial_factor, c.stop * spatial_factor),
                overlaps=(_overlap(row_spans, i - 1), _overlap(row_spans, i),
                          _overlap(col_spans, j - 1), _overlap(col_spans, j)),
            ))
    return tiles


def _overlap(spans: list[Span], i: int) -> int:
    """Latent pixels shared by ``spans[i]`` and ``spans[i + 1]`` (0 past either end)."""
    if i < 0 or i + 1 >= len(spans):
        return 0
    return spans[i].stop - spans[i + 1].start


@dataclass(frozen=True)
class Window:
    """One temporal decode call.

    ``latents`` is what the decoder is fed; the call's pixel frames start at global index
    ``offset``. Frames before ``keep_from`` (global index) are warm-up context and are dropped;
    frames from ``keep_from`` on are new or blended with the previous window's tail.
    """

    latents: Span
    offset: int
    keep_from: int
    stop: int  # global pixel index one past this window's last frame


def plan_windows(latent_frames: int, time_map: TimeMap, chunk_latents: int,
                 context_latents: int, carries_cache: bool = False,
                 spans: list[Span] | None = None, continued: bool = False) -> list[Window]:
    """Temporal windows of ``chunk_latents`` new latents, each preceded by ``context_latents``
    latents of context that the next window re-decodes (for warm-up discard or cross-fade).

    ``carries_cache``: the decoder continues from the previous chunk's cache (so a chunk starting
    at latent ``s`` yields exactly the full decode's frames from ``pixel_start(s)``); the windows
    are then disjoint, since the cache *is* the context. Otherwise every window starts the decoder
    afresh, and a causal decoder gives its first latent a single frame (see ``window_offset``).
    ``spans`` overrides the even split into new-latent spans (for decoders that must be fed whole
    frame batches, e.g. CogVideoX). ``continued``: fresh windows decode their first latent as the
    full decode does (all its frames, not one image frame), so they start at ``pixel_start``.
    """
    if chunk_latents < 1:
        raise ValueError("a temporal chunk must hold at least one latent frame")
    windows = []
    for span in spans if spans is not None else split_even(latent_frames, chunk_latents):
        if carries_cache and context_latents:
            raise ValueError("cache-carrying decodes need no temporal context")
        first = max(0, span.start - context_latents)
        if carries_cache or continued or first == 0:
            offset = time_map.pixel_start(first)
        else:
            offset = time_map.window_offset(first)
        keep_from = time_map.pixel_start(span.start)
        windows.append(Window(Span(first, span.stop), offset, keep_from,
                              time_map.pixel_frames(span.stop)))
    return windows
