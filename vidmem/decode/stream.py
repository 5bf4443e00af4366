"""Streaming spatial-temporal decode: latents in, finished frames out, one chunk at a time.

Why: ``vae.decode`` (and diffusers' own tiled decode) materialises every frame of the clip, on
the device, before returning. Here each temporal chunk is decoded tile by tile into one chunk-sized
buffer, blended, clamped, turned into uint8 on the device and handed out; then it is gone. For
causal families the per-tile cache is carried across chunks, so the stream equals the full decode;
for the others, overlapping windows are re-decoded as context and cross-faded.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Protocol

import torch

from ..errors import InvalidInput, InvalidInputType, InvalidOptions
from .. import allocator
from ..errors import InvalidInput, InvalidInputType, InvalidOptions
from ..io.frames import vae_pixels_to_uint8_
from ..io.staging import HostStager
from ..memory import release_host_memory
from .blend import blend_shape, crossfade, tile_mask
from .conv_workspace import BoundedConvWorkspace, configured_max_bytes
from .clip_norm import ClipNormStats, Schedule, StopDecode, stages, stop_after
from .families import FamilyAdapter, adapter_for
from .families.base import ClipFacts, DecodeRun
from .geometry import Tile, Window, plan_tiles, plan_windows
from .options import DecodeOptions

log = logging.getLogger("vidmem")

OutputType = Literal["uint8", "pt"]

#: Defaults when the caller gives no sizes (pixel frames / pixels).
DEFAULT_CHUNK_FRAMES = 16
DEFAULT_TILE_OVERLAP = 64
#: On CPU, frames larger than this (in pixels) are tiled by default: RAM is plentiful, tiling
#: costs time. On CUDA the tile size comes from free device memory instead.
CPU_UNTILED_MAX_PIXELS = 1920 * 1088


@dataclass(frozen=True)
class DecodePlan:
    """Everything the decode will do, decided before any decoding starts (printable, testable)."""

    family: str
    streaming: str
    latent_shape: tuple[int, ...]
    frames: int
    height: int
    width: int
    chunk_latents: int
    context_latents: int
    blend_frames: int
    tile_latent: int | None
    tile_overlap_latent: int
    windows: list[Window] = field(repr=False)
    tiles: list[Tile] = field(repr=False)
    #: GroupNorms normalize with the whole clip's statistics, gathered by statistics passes
    #: first (``"estimate"``: one pass; ``"exact"``: one per norm); ``None``: not used.
    clip_norm: Schedule | None = None
    #: what the family adapter knows about this clip (its time map and layout, probed factors,
    #: whole-clip statistics on or off; a family's subclass adds its own, such as CogVideoX's
    #: odd first batch): the executor gives them to the adapter, which keeps no per-clip state.
    facts: ClipFacts | None = field(default=None, repr=False)

    @property
    def chunk_frames(self) -> list[int]:
        """Pixel frames each chunk delivers (before cross-fading moves a few to the next)."""
        return [w.stop - w.keep_from for w in self.windows]

    def summary(self) -> str:
        def n(count: int, noun: str) -> str:
            return f"{count} {noun}{'' if count == 1 else 's'}"

        if len(self.tiles) > 1:
            sf = self.tiles[0].py.size // self.tiles[0].rows.size
            rows = len({t.rows for t in self.tiles})
            cols = len({t.cols for t in self.tiles})
            th, tw = self.tiles[0].rows.size, self.tiles[0].cols.size
            overlaps = sorted({o for t in self.tiles for o in t.overlaps if o})
            span = (f"{overlaps[0]}" if len(overlaps) == 1
                    else f"{overlaps[0]}-{overlaps[-1]}")
            size = f"{th}" if th == tw else f"{th}x{tw}"
            tiling = (f"{n(len(self.tiles), 'tile')} of {size} latent px ({th * sf}x{tw * sf} "
                      f"px, {rows}x{cols}), overlap {span} latent px")
        else:
            tiling = "untiled"
        temporal = (f"{n(len(self.windows), 'chunk')} of "
                    f"{n(self.chunk_latents, 'latent frame')}")
        if self.context_latents:
            temporal += f" (+{self.context_latents} latents of context, " \
                        f"{self.blend_frames}-frame cross-fade)"
        if self.clip_norm == "estimate":
            temporal += ", whole-clip GroupNorm statistics (1 statistics pass)"
        elif self.clip_norm == "exact":
            temporal += ", exact whole-clip GroupNorm statistics (1 statistics pass per norm)"
        return (f"{self.family} VAE, {self.streaming} streaming: {self.frames} frames "
                f"{self.width}x{self.height}; {temporal}; {tiling}; frames per chunk "
                f"{_runs(self.chunk_frames)}")


def _runs(values: list[int]) -> str:
    """``[17, 16, 16, 5]`` -> ``"17, 16 x2, 5"``."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j < len(values) and values[j] == values[i]:
            j += 1
        out.append(f"{values[i]}" + (f" x{j - i}" if j - i > 1 else ""))
        i = j
    return ", ".join(out)


class WorkSplit(Protocol):
    """How several processes share one decode (implemented by :class:`vidmem.parallel.DecodeSplit`;
    ``None``, the default, is one process doing everything through the unchanged path).

    ``start(plan, device)`` is called once per stream and sets ``mode``: ``"tiles"`` (each window
    asks ``gather`` for its tiles) or ``"windows"`` (the stream asks ``gather`` for its windows).
    ``gather(items, produce)`` calls ``produce(i)`` for the items this process owns and yields
    ``(i, result)`` for *every* item, in order, on the process that writes (rank 0), and nothing
    elsewhere, so the blend sees the same tensors in the same order as a single process.
    ``finish()`` after the last window; ``stop(error)`` when this process fails (``error``) or its
    consumer stops reading (``None``), so the others are told instead of waiting forever.
    """

    mode: str

    def start(self, plan: "DecodePlan", device: torch.device) -> None: ...

    def gather(self, items: range, produce: Callable[[int], torch.Tensor]
               ) -> Iterator[tuple[int, torch.Tensor]]: ...

    def finish(self) -> None: ...

    def stop(self, error: BaseException | None) -> None: ...


def _vae_device_dtype(vae: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where the decode runs: the accelerate hook's execution device if offloaded, else params."""
    hook = getattr(vae, "_hf_hook", None)
    exec_device = getattr(hook, "execution_device", None)
    param = next(vae.parameters(), None)
    device = torch.device(exec_device) if exec_device is not None else (
        param.device if param is not None else torch.device("cpu"))
    dtype = param.dtype if param is not None else torch.float32
    return device, dtype


def _auto_tile_pixels(facts: ClipFacts, min_tile_latent: int, height: int, width: int,
                      device: torch.device, dtype: torch.dtype,
                      free_device_bytes: int | None) -> int | None:
    """Pick a tile edge (pixels) so one tile's decode fits; ``None`` when no tiling is needed.

    On CUDA, given the device's free memory: assume the decoder's widest full-resolution
    activation costs about ``ACT_BYTES_PER_PIXEL`` bytes per output pixel and frame (a 128-channel
    feature map, with a factor of 4 for the conv workspace and temporaries), and let one latent
    frame's worth of a tile use at most half of ``free_device_bytes``. Elsewhere (or on CUDA
    without a reading of free memory): frames above :data:`CPU_UNTILED_MAX_PIXELS` are tiled.
    Pure arithmetic: the reading is the executor's (:func:`free_device_bytes_for`).
    """
    if device.type == "cuda" and free_device_bytes is not None:
        act_bytes_per_pixel = 128 * 4 * torch.finfo(dtype).bits // 8
        frames_per_piece = max(1, facts.time_map.factor)
        max_pixels = (free_device_bytes // 2) // (act_bytes_per_pixel * frames_per_piece)
    else:
        max_pixels = CPU_UNTILED_MAX_PIXELS
    if height * width <= max_pixels:
        return None
    return max(min_tile_latent * facts.spatial_factor, int(math.sqrt(max_pixels)))


def free_device_bytes_for(vae: torch.nn.Module) -> int | None:
    """The free memory of the CUDA device ``vae`` decodes on, now (``None`` elsewhere): what the
    executor reads and gives :func:`plan_decode` to size the automatic tile."""
    device, _ = _vae_device_dtype(vae)
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def plan_decode(vae: torch.nn.Module, latents: torch.Tensor,
                options: DecodeOptions | None = None, *, decode_kwargs: dict | None = None,
                adapter: FamilyAdapter | None = None, free_device_bytes: int | None = None,
                **shortcuts: Any) -> DecodePlan:
    """Validate the options against the latents and the VAE, and return the decode plan.

    A pure planner: it changes nothing (not the adapter, not the VAE) and reads no device state
    (the executor passes ``free_device_bytes``), so the same inputs always give the same plan,
    whoever asks: the decode, the out-of-memory fallback, the offload simulator.

    ``options`` (a :class:`~vidmem.decode.options.DecodeOptions`; default: all defaults) with
    the keyword shortcuts ``chunk_frames=``, ``overlap_frames=``, ``tile_size=``,
    ``tile_overlap=``, ``whole_clip_norm=`` applied over it (see
    :meth:`DecodeOptions.build`). All sizes are in pixels / pixel frames and are rounded down to
    whole latent units:
    ``chunk_frames`` new frames per chunk, ``overlap_frames`` frames of context re-decoded by each
    window of a non-causal family (ignored by cache-carrying families, which need none; at most
    the larger of ``chunk_frames - 1`` and the family's default context),
    ``tile_size``/``tile_overlap`` the spatial tile edge and the least overlap (``tile_size=0``
    disables spatial tiling; ``None`` chooses from the frame size and, on CUDA,
    ``free_device_bytes``; the overlap defaults to 64 px, or a quarter of a smaller tile). Tiles
    are decoded at the requested size; the frame's remainder goes into the overlaps.
    ``decode_kwargs`` are the extra arguments of the VAE's ``decode`` (they can change the plan:
    LTX-2's ``causal=True`` makes its decode exactly streamable).
    ``whole_clip_norm``: for decoders whose GroupNorms normalize over the whole clip
    (HunyuanVideo), normalize every piece with the whole clip's statistics and stream with a
    carried causal state (no re-decoded context, no cross-fades, no seams; see
    :mod:`vidmem.decode.clip_norm`). ``True`` / ``"estimate"``: one statistics pass first (about
    twice the decode time; the statistics are estimates, exact for the first norm); ``"exact"``:
    one statistics pass per norm (equals the full decode to float rounding, about 8x the decode
    time for HunyuanVideo); ``False``: cross-faded windows with per-window statistics. ``None``:
    the family's default (``"estimate"`` for HunyuanVideo).

    The clip's own facts (its time map and layout, factors a generic VAE is probed for, whether
    whole-clip statistics are used) are in the plan's ``facts``: the executor hands them to the
    adapter, which keeps no state of its own about the clip.
    """
    options = DecodeOptions.build(options, **shortcuts)
    chunk_frames, overlap_frames = options.chunk_frames, options.overlap_frames
    tile_size, tile_overlap = options.tile_size, options.tile_overlap
    whole_clip_norm = options.whole_clip_norm
    adapter = adapter or adapter_for(vae, decode_kwargs)
    clip_norm = adapter.clip_norm_default
    if whole_clip_norm is not None:
        if whole_clip_norm and not adapter.supports_clip_norm:
            raise InvalidOptions(f"whole_clip_norm is for decoders whose GroupNorms span the clip "
                                 f"(HunyuanVideo); the {adapter.name} VAE has none to gather")
        clip_norm = bool(whole_clip_norm)
    clip_norm = clip_norm and adapter.supports_clip_norm
    schedule: Schedule | None = None
    if clip_norm:
        schedule = "exact" if whole_clip_norm == "exact" else "estimate"
    z = adapter.to_canonical(latents)
    facts = adapter.clip_facts(latents, clip_norm)
    if not z.is_floating_point():
        raise InvalidInputType(f"latents must be a float tensor, got {z.dtype}")
    _, _, t_lat, h_lat, w_lat = z.shape
    if t_lat < 1 or h_lat < 1 or w_lat < 1:
        raise InvalidInput(f"latents have an empty dimension: shape {tuple(latents.shape)}")
    tm, sf = facts.time_map, facts.spatial_factor
    height, width = h_lat * sf, w_lat * sf

    chunk_latents = max(1, (chunk_frames or DEFAULT_CHUNK_FRAMES) // tm.factor)
    if facts.streaming == "window":
        # A fresh causal window gives its first latent a single (image) frame, so c latents of
        # context yield factor*(c-1)+1 frames before the new ones; plain decoders, and causal ones
        # whose windows continue the clip's frame rule (LTX), yield factor*c.
        image_first = tm.causal_first_frame and not adapter.continues_windows

        def context_for(frames: int) -> int:
            if image_first:
                return 1 + -(-max(frames - 1, 0) // tm.factor) if frames > 0 else 0
            return -(-frames // tm.factor)  # round up: at least the asked-for overlap

        if overlap_frames is None:
            context = adapter.default_context_latents
        else:
            context = context_for(overlap_frames)
            limit = max(adapter.default_context_latents,
                        context_for((chunk_frames or DEFAULT_CHUNK_FRAMES) - 1))
            if context > limit:
                raise InvalidOptions(
                    f"overlap_frames ({overlap_frames}) needs {context} latent frames of context;"
                    f" at most {limit} (the larger of chunk_frames - 1 and the {adapter.name} "
                    f"VAE's default context of {adapter.default_context_latents} latent frames)")
        if tm.causal_first_frame:
            # A fresh causal window turns its first latent into one image frame (or, continuing
            # the frame rule, into frames with no past): the frames just before its new latents
            # need at least one latent of context.
            context = max(context, 1)
        # The cross-fade lies inside the re-decoded context (after the image frame).
        context_pixels = tm.factor * (context - 1) if image_first else tm.factor * context
        blend = min(adapter.default_blend_frames, max(0, context_pixels))
    else:
        context, blend = 0, 0

    device, dtype = _vae_device_dtype(vae)
    if tile_size is None:
        tile_px = _auto_tile_pixels(facts, adapter.min_tile_latent, height, width, device, dtype,
                                    free_device_bytes)
    else:
        tile_px = tile_size or None
    tile_latent = None
    overlap_latent = 0
    if tile_px is not None:
        tile_latent = tile_px // sf
        if tile_latent < adapter.min_tile_latent:
            raise InvalidOptions(
                f"tile_size {tile_px}px is below the {adapter.name} VAE's minimum of "
                f"{adapter.min_tile_latent * sf}px ({adapter.min_tile_latent} latent px x{sf}); "
                f"use a larger tile_size or 0 to disable tiling")
        # The default overlap shrinks with small tiles, so any tile size works without it.
        overlap_px = min(DEFAULT_TILE_OVERLAP, tile_px // 4) if tile_overlap is None else tile_overlap
        overlap_latent = overlap_px // sf
        if overlap_latent >= tile_latent:
            raise InvalidOptions(f"tile_overlap ({overlap_px}px) must be smaller than tile_size "
                                 f"({tile_px}px)")
        if tile_latent >= max(h_lat, w_lat):
            tile_latent, overlap_latent = None, 0  # one tile covers the frame: no tiling needed
    tiles = plan_tiles(h_lat, w_lat, sf, tile_latent, overlap_latent)
    cache = facts.streaming == "cache"
    windows = plan_windows(t_lat, tm, chunk_latents, context, carries_cache=cache,
                           spans=adapter.chunk_spans(t_lat, chunk_latents) if cache else None,
                           continued=adapter.continues_windows)
    return DecodePlan(adapter.name, facts.streaming, tuple(latents.shape),
                      tm.pixel_frames(t_lat), height, width, chunk_latents, context, blend,
                      tile_latent, overlap_latent, windows, tiles, clip_norm=schedule,
                      facts=facts)


def _decode_pieces(adapter: FamilyAdapter, z: torch.Tensor, window: Window, tiles: list[Tile],
                   states: list, device: torch.device, dtype: torch.dtype,
                   stats: list[ClipNormStats] | None = None, collect: bool = False,
                   only: list[torch.nn.Module] | None = None
                   ) -> Iterator[tuple[Tile, torch.Tensor | None]]:
    """Decode one window tile by tile, yielding ``(tile, float32 pixels)``.

    ``stats``: per tile, whole-clip GroupNorm statistics, applied around the tile's pieces or
    gathered (``collect``; ``only`` those norms). A statistics pass stopped early
    (:func:`clip_norm.stop_after`) yields ``None`` pixels.
    """
    zw = z[:, :, window.latents.as_slice()]
    first = window.latents.start == 0
    for i, (tile, state) in enumerate(zip(tiles, states)):
        zt = zw if len(tiles) == 1 else zw[:, :, :, tile.rows.as_slice(), tile.cols.as_slice()]
        if stats is None:
            scope: contextlib.AbstractContextManager = contextlib.nullcontext()
        elif collect:
            scope = stats[i].collecting(only)
        else:
            scope = stats[i].normalizing()
        try:
            with scope:
                piece = adapter.decode_piece(zt.to(device, dtype), state, first)
        except StopDecode:
            yield tile, None
            continue
        yield tile, piece.float()


def _decode_window(adapter: FamilyAdapter, z: torch.Tensor, window: Window, tiles: list[Tile],
                   states: list, masks: list[torch.Tensor], device: torch.device,
                   dtype: torch.dtype, split: WorkSplit | None = None,
                   stats: list[ClipNormStats] | None = None) -> torch.Tensor | None:
    """Decode one window, all its tiles, blended into one float32 buffer on ``device``.

    ``split`` (tile mode): this process decodes only its own tiles and the writing process blends
    every tile, received in tile order, exactly as one process would; the others return ``None``.
    ``stats``: per tile, the whole-clip GroupNorm statistics each tile normalizes with.
    """
    zw = z[:, :, window.latents.as_slice()]
    first = window.latents.start == 0

    def decode_tile(i: int) -> torch.Tensor:
        tile = tiles[i]
        zt = zw if len(tiles) == 1 else zw[:, :, :, tile.rows.as_slice(), tile.cols.as_slice()]
        with stats[i].normalizing() if stats is not None else contextlib.nullcontext():
            return adapter.decode_piece(zt.to(device, dtype), states[i], first).float()

    if split is None and len(tiles) == 1:
        return decode_tile(0)

    pieces = (split.gather(range(len(tiles)), decode_tile) if split is not None
              else ((i, decode_tile(i)) for i in range(len(tiles))))
    acc = norm = None
    for i, piece in pieces:
        tile, mask = tiles[i], masks[i] if masks else None
        if mask is None:  # one tile (split mode only): nothing to blend
            acc = piece
            continue
        if acc is None:
            b, c, t = piece.shape[:3]
            height, width = tiles[-1].py.stop, tiles[-1].px.stop
            acc = torch.zeros(b, c, t, height, width, device=device)
            norm = torch.zeros(height, width, device=device)
        acc[:, :, :, tile.py.as_slice(), tile.px.as_slice()] += piece * mask
        norm[tile.py.as_slice(), tile.px.as_slice()] += mask
        del piece
    if acc is None or norm is None:
        return acc
    return acc / norm


def _gather_clip_statistics(adapter: FamilyAdapter, z: torch.Tensor, plan: DecodePlan,
                            run: DecodeRun, device: torch.device, dtype: torch.dtype
                            ) -> list[ClipNormStats]:
    """The statistics passes of a whole-clip-statistics decode (outputs dropped): one over every
    chunk and tile collecting all norms, then, for the ``"exact"`` schedule, one per later norm.

    Statistics are the whole clip's *per spatial tile*: each tile normalizes as it would if it
    were decoded over all frames in one call (what a tiled decode in one temporal window does,
    vidmem's or diffusers'). Whole-frame statistics pooled over the tiles measured worse (the
    published HunyuanVideo config, 2 tiles: 15.4 dB against 16.8 dB for tiles alone), because a
    tile's activations near its border are not the frame's.
    """
    stats = [ClipNormStats(adapter.clip_norm_modules()) for _ in plan.tiles]

    def statistics_pass(only: list[torch.nn.Module] | None) -> None:
        states = [adapter.new_state(run) for _ in plan.tiles]
        for window in plan.windows:
            for _, piece in _decode_pieces(adapter, z, window, plan.tiles, states, device, dtype,
                                           stats, collect=True, only=only):
                del piece

    statistics_pass(None)
    for only in stages(stats[0], plan.clip_norm):
        for tile_stats in stats:
            tile_stats.reset(only)
        with stop_after(only[-1]):
            statistics_pass(only)
    return stats


def decode_latents(vae: torch.nn.Module, latents: torch.Tensor,
                   options: DecodeOptions | None = None, *, output_type: OutputType = "uint8",
                   progress: Callable[[int, int], None] | None = None,
                   decode_kwargs: dict | None = None, split: WorkSplit | None = None,
                   **shortcuts: Any) -> Iterator:
    """Decode ``latents`` (exactly what ``vae.decode`` takes) as an iterator of chunks, in order.

    ``options``: a :class:`~vidmem.decode.options.DecodeOptions`, with the keyword shortcuts
    ``chunk_frames=``, ``overlap_frames=``, ``tile_size=``, ``tile_overlap=``,
    ``whole_clip_norm=`` over it (see :func:`plan_decode` for what they mean). This is the
    executor: it reads the device's free memory now (for an automatic tile size) and gives it to
    the planner, which reads none itself.

    ``output_type="pt"``: float32 chunks in the layout of ``vae.decode(latents).sample``;
    concatenating them along the VAE's time axis reproduces the full decode (exactly for
    cache-carrying families without spatial tiling). ``"uint8"``: ``(T, H, W, 3)`` uint8 CPU
    tensors, ready for :class:`vidmem.VideoWriter` (batch size 1 only).

    ``decode_kwargs`` are extra arguments of the VAE's own ``decode`` (e.g. LTX's ``temb``).
    ``whole_clip_norm``: GroupNorm statistics of the whole clip for decoders whose norms span it
    (HunyuanVideo; on by default there): a first pass over the clip gathers them before the
    first chunk is delivered (see :func:`plan_decode`).
    ``progress(frames_done, frames_total)`` is called after each chunk. Options are checked (see
    :func:`plan_decode`) before anything is decoded.

    ``split``: share this decode with other processes (a :class:`vidmem.parallel.DecodeSplit`;
    every process calls this with the same latents and options, and only rank 0's iterator yields
    chunks, equal to a single process's).
    """
    if output_type not in ("uint8", "pt"):
        raise InvalidOptions(f"output_type must be 'uint8' or 'pt', got {output_type!r}")
    options = DecodeOptions.build(options, **shortcuts)
    adapter = adapter_for(vae, decode_kwargs)
    free = free_device_bytes_for(vae) if options.tile_size is None else None
    plan = plan_decode(vae, latents, options, adapter=adapter, free_device_bytes=free)
    z = adapter.to_canonical(latents)
    if z.device.type != "meta" and not bool(torch.isfinite(z).all()):
        bad = int(z.numel() - torch.isfinite(z).sum())
        raise InvalidInput(f"the latents contain {bad} NaN/inf value(s) of {z.numel()}: the "
                         f"denoising diverged (common with fp16: try bf16 or fp32, or another "
                         f"seed); nothing was decoded")
    if output_type == "uint8" and z.shape[0] != 1:
        raise InvalidInput(f"uint8 output decodes one video at a time; got a batch of "
                         f"{z.shape[0]} (pass one video's latents or output_type='pt')")
    return _stream(adapter, z, plan, output_type, progress, split)


def device_chunks(adapter: FamilyAdapter, z: torch.Tensor, plan: DecodePlan,
                  output_type: OutputType, windows: list[Window] | None = None,
                  split: WorkSplit | None = None, conv_workspace: int | None = None,
                  stats: list[ClipNormStats] | None = None) -> Iterator:
    """The device side of the stream: for each window (default: all of ``plan.windows``; else a
    prefix of them) decode its tiles, blend, cross-fade and convert, and yield ``(frames,
    chunk)``: the chunk *on the VAE's device* (uint8 ``(T, H, W, 3)``, or the native float32
    layout for ``"pt"``) and its number of frames; empty chunks are skipped. With
    ``plan.clip_norm``, the statistics passes run first (unless ``stats`` gives them).

    ``split``: this process's share of a decode split over several (:mod:`vidmem.parallel`):
    tiles (or windows) decoded elsewhere arrive through it, and a process that does not blend
    yields nothing.

    ``conv_workspace``: cap (bytes) on the column buffer of CPU ``slow_conv3d`` calls
    (:class:`~vidmem.decode.conv_workspace.BoundedConvWorkspace`; ``None``: torch's own calls).

    The clip's facts come from ``plan.facts``, never from ``adapter`` (which may be another
    instance than the planner's: the memory simulator makes its own), so any adapter of the
    VAE executes the plan the same way.

    Separate from the host transfer so the memory simulator (``vidmem.offload.stages``) runs
    exactly this code on fake tensors."""
    device, dtype = _vae_device_dtype(adapter.vae)
    facts = plan.facts
    if facts is None:
        raise ValueError("this DecodePlan has no clip facts; make plans with plan_decode")
    run = adapter.begin_decode(facts)
    shape = blend_shape(plan.tiles)
    masks = ([tile_mask(t, shape=shape).to(device) for t in plan.tiles] if len(plan.tiles) > 1
             else [])
    if stats is None and plan.clip_norm:
        with BoundedConvWorkspace(conv_workspace) if conv_workspace else contextlib.nullcontext():
            stats = _gather_clip_statistics(adapter, z, plan, run, device, dtype)
    states = [adapter.new_state(run) for _ in plan.tiles]
    count = len(plan.windows) if windows is None else len(windows)

    def window_pixels(k: int) -> torch.Tensor | None:
        """Window ``k``, all tiles blended and clamped (``None``: another process blends it)."""
        nonlocal states
        if plan.streaming == "window":
            states = [adapter.new_state(run) for _ in plan.tiles]
        tiles_split = split if split is not None and split.mode == "tiles" else None
        # The mode is entered per window: never left active across a yield.
        with BoundedConvWorkspace(conv_workspace) if conv_workspace else contextlib.nullcontext():
            out = _decode_window(adapter, z, plan.windows[k], plan.tiles, states, masks, device,
                                 dtype, tiles_split, stats)
        if out is not None and adapter.clamps_output:
            out = out.clamp_(-1.0, 1.0)
        return out

    if split is not None and split.mode == "windows":
        outputs = split.gather(range(count), window_pixels)
    else:
        outputs = ((k, window_pixels(k)) for k in range(count))
    tail: torch.Tensor | None = None
    for k, out in outputs:
        if out is None:
            continue  # decoded here, blended and written by another process
        window = plan.windows[k]
        if tail is not None:
            n = tail.shape[2]
            i0 = window.keep_from - n - window.offset
            w = crossfade(n).to(out.device).view(1, 1, n, 1, 1)
            blended = tail * (1 - w) + out[:, :, i0:i0 + n] * w
            out = torch.cat([blended, out[:, :, i0 + n:]], dim=2)
        else:
            out = out[:, :, window.keep_from - window.offset:]
        last = k == len(plan.windows) - 1
        if plan.blend_frames and not last:
            tail = out[:, :, -plan.blend_frames:]
            out = out[:, :, :-plan.blend_frames]
        else:
            tail = None
        if out.shape[2] == 0:
            continue
        frames = out.shape[2]
        # uint8 on the device, in place: the float chunk is ours and not needed afterwards (a
        # cross-fade tail, if any, lies outside this view).
        chunk = (vae_pixels_to_uint8_(out) if output_type == "uint8"
                 else adapter.from_canonical(out, facts))
        del out
        yield frames, chunk
        del chunk  # the consumer has it; do not keep it alive while decoding the next


_END = object()


def _without_grad(items: Iterator) -> Iterator:
    """``items``, each produced with autograd off; autograd is as the consumer had it while the
    consumer holds an item. (A ``with torch.no_grad()`` around a ``yield`` would leave autograd
    off in the consumer's own code for as long as the generator is suspended: grad mode is
    thread state.)"""
    while True:
        with torch.no_grad():
            item = next(items, _END)
        if item is _END:
            return
        yield item
        # Not kept while the next item is produced: a chunk held here would stay alive through
        # the next chunk's decode (measured: +14-18 MiB at the peak of every chunk after the
        # first on the realistic Wan config).
        del item


def _largest_chunk_bytes(plan: DecodePlan, channels: int = 3) -> int:
    """uint8 bytes of the largest chunk ``plan`` hands out: its most frames (a cross-fade may
    move up to ``blend_frames`` into the next chunk) times the frame size."""
    frames = max(plan.chunk_frames, default=0) + plan.blend_frames
    return frames * plan.height * plan.width * channels


def _stream(adapter: FamilyAdapter, z: torch.Tensor, plan: DecodePlan, output_type: OutputType,
            progress: Callable[[int, int], None] | None,
            split: WorkSplit | None = None) -> Iterator:
    device, _ = _vae_device_dtype(adapter.vae)
    # CUDA uint8 chunks reach the host through one reused pinned buffer, each copy overlapped
    # with the next chunk's decode; elsewhere chunks are handed out as they are made.
    stager = (HostStager(device, capacity=_largest_chunk_bytes(plan))
              if device.type == "cuda" and output_type == "uint8" else None)
    reported = 0
    conv_workspace = None
    if device.type == "cpu":  # host memory is where a CPU decode peaks
        allocator.tune_for_decode()
        conv_workspace = configured_max_bytes()
    done = 0
    try:
        if split is not None:
            split.start(plan, device)
        for frames, chunk in _without_grad(device_chunks(adapter, z, plan, output_type,
                                                         split=split,
                                                         conv_workspace=conv_workspace)):
            done += frames
            release_host_memory()
            if stager is not None:
                # Hand out the previous chunk (its copy ran while this one decoded), then
                # start this one's copy, which runs while the next chunk decodes.
                if stager.pending:
                    previous = stager.collect()
                    if progress is not None:
                        progress(reported, plan.frames)
                    yield previous
                    del previous
                stager.submit(chunk)
                reported = done
                del chunk
                continue
            chunk = chunk.cpu()
            if progress is not None:
                progress(done, plan.frames)
            yield chunk
            del chunk  # the consumer has it; do not keep it alive while decoding the next
        if stager is not None and stager.pending:
            last_chunk = stager.collect()
            if progress is not None:
                progress(reported, plan.frames)
            yield last_chunk
            del last_chunk
        if split is not None:
            split.finish()
    except GeneratorExit:
        if split is not None:
            split.stop(None)  # the consumer stopped reading: tell the other processes
        raise
    except BaseException as e:
        if split is not None:
            split.stop(e)  # tell the other processes (raises the error they all see)
        raise
