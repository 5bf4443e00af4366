"""Streaming spatial-temporal decode: latents in, finished frames out, one chunk at a time.

Why: ``vae.decode`` (and diffusers' own tiled decode) materialises every frame of the clip, on
the device, before returning. Here each temporal chunk is decoded tile by tile into one chunk-sized
buffer, blended, clamped, turned into uint8 on the device and handed out; then it is gone. For
causal families the per-tile cache is carried across chunks, so the stream equals the full decode;
for the others, overlapping windows are re-decoded as context and cross-faded.
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal, Protocol

import torch

from .. import allocator
from ..io.frames import vae_pixels_to_uint8_
from ..io.staging import HostStager
from ..memory import release_host_memory
from .blend import crossfade, tile_mask
from .conv_workspace import BoundedConvWorkspace, configured_max_bytes
from .families import FamilyAdapter, adapter_for
from .families.generic import GenericAdapter
from .geometry import Tile, Window, plan_tiles, plan_windows

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

    def summary(self) -> str:
        def n(count: int, noun: str) -> str:
            return f"{count} {noun}{'' if count == 1 else 's'}"

        tiling = (f"{n(len(self.tiles), 'tile')} of {self.tile_latent} latent px "
                  f"(overlap {self.tile_overlap_latent})" if self.tile_latent else "untiled")
        temporal = (f"{n(len(self.windows), 'chunk')} of "
                    f"{n(self.chunk_latents, 'latent frame')}")
        if self.context_latents:
            temporal += f" (+{self.context_latents} context, {self.blend_frames}-frame cross-fade)"
        return (f"{self.family} VAE, {self.streaming} streaming: {self.frames} frames "
                f"{self.width}x{self.height}; {temporal}; {tiling}")


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


def _auto_tile_pixels(adapter: FamilyAdapter, height: int, width: int,
                      device: torch.device, dtype: torch.dtype) -> int | None:
    """Pick a tile edge (pixels) so one tile's decode fits; ``None`` when no tiling is needed.

    On CUDA: assume the decoder's widest full-resolution activation costs about
    ``ACT_BYTES_PER_PIXEL`` bytes per output pixel and frame (a 128-channel feature map, with a
    factor of 4 for the conv workspace and temporaries), and let one latent frame's worth of a tile
    use at most half of the currently free device memory.
    """
    if device.type == "cuda":
        act_bytes_per_pixel = 128 * 4 * torch.finfo(dtype).bits // 8
        free, _ = torch.cuda.mem_get_info(device)
        frames_per_piece = max(1, adapter.time_map.factor)
        max_pixels = (free // 2) // (act_bytes_per_pixel * frames_per_piece)
    else:
        max_pixels = CPU_UNTILED_MAX_PIXELS
    if height * width <= max_pixels:
        return None
    return max(adapter.min_tile_latent * adapter.spatial_factor, int(math.sqrt(max_pixels)))


def plan_decode(vae: torch.nn.Module, latents: torch.Tensor, *, chunk_frames: int | None = None,
                overlap_frames: int | None = None, tile_size: int | None = None,
                tile_overlap: int | None = None, decode_kwargs: dict | None = None,
                adapter: FamilyAdapter | None = None) -> DecodePlan:
    """Validate the options against the latents and the VAE, and return the decode plan.

    All sizes are in pixels / pixel frames and are rounded down to whole latent units:
    ``chunk_frames`` new frames per chunk, ``overlap_frames`` frames of context re-decoded by each
    window of a non-causal family (ignored by cache-carrying families, which need none),
    ``tile_size``/``tile_overlap`` the spatial tile edge and overlap (``tile_size=0`` disables
    spatial tiling; ``None`` chooses from the frame size and free device memory; the overlap
    defaults to 64 px, or a quarter of a smaller tile).
    ``decode_kwargs`` are the extra arguments of the VAE's ``decode`` (they can change the plan:
    LTX-2's ``causal=True`` makes its decode exactly streamable).
    """
    adapter = adapter or adapter_for(vae, decode_kwargs)
    z = adapter.to_canonical(latents)
    if isinstance(adapter, GenericAdapter):
        adapter.probe(z)
    if not z.is_floating_point():
        raise TypeError(f"latents must be a float tensor, got {z.dtype}")
    _, _, t_lat, h_lat, w_lat = z.shape
    if t_lat < 1 or h_lat < 1 or w_lat < 1:
        raise ValueError(f"latents have an empty dimension: shape {tuple(latents.shape)}")
    tm, sf = adapter.time_map, adapter.spatial_factor
    height, width = h_lat * sf, w_lat * sf

    for name, value in (("chunk_frames", chunk_frames), ("overlap_frames", overlap_frames),
                        ("tile_size", tile_size), ("tile_overlap", tile_overlap)):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if chunk_frames == 0:
        raise ValueError("chunk_frames must be at least 1 pixel frame")

    chunk_latents = max(1, (chunk_frames or DEFAULT_CHUNK_FRAMES) // tm.factor)
    if adapter.streaming == "window":
        if chunk_frames is not None and overlap_frames is not None and overlap_frames >= chunk_frames:
            raise ValueError(f"overlap_frames ({overlap_frames}) must be smaller than chunk_frames "
                             f"({chunk_frames})")
        # A fresh causal window gives its first latent a single (image) frame, so c latents of
        # context yield factor*(c-1)+1 frames before the new ones; plain decoders yield factor*c.
        if overlap_frames is None:
            context = adapter.default_context_latents
        elif tm.causal_first_frame:
            context = 1 + -(-max(overlap_frames - 1, 0) // tm.factor) if overlap_frames else 0
        else:
            context = -(-overlap_frames // tm.factor)  # round up: at least the asked-for overlap
        if tm.causal_first_frame:
            # A fresh causal window turns its first latent into one image frame, so the frames
            # just before its new latents need at least one latent of context.
            context = max(context, 1)
        # The cross-fade lies inside the re-decoded context, after the causal image frame.
        context_pixels = tm.factor * (context - 1) if tm.causal_first_frame else tm.factor * context
        blend = min(adapter.default_blend_frames, max(0, context_pixels))
    else:
        context, blend = 0, 0

    device, dtype = _vae_device_dtype(vae)
    if tile_size is None:
        tile_px = _auto_tile_pixels(adapter, height, width, device, dtype)
    else:
        tile_px = tile_size or None
    tile_latent = None
    overlap_latent = 0
    if tile_px is not None:
        tile_latent = tile_px // sf
        if tile_latent < adapter.min_tile_latent:
            raise ValueError(
                f"tile_size {tile_px}px is below the {adapter.name} VAE's minimum of "
                f"{adapter.min_tile_latent * sf}px ({adapter.min_tile_latent} latent px x{sf}); "
                f"use a larger tile_size or 0 to disable tiling")
        # The default overlap shrinks with small tiles, so any tile size works without it.
        overlap_px = min(DEFAULT_TILE_OVERLAP, tile_px // 4) if tile_overlap is None else tile_overlap
        overlap_latent = overlap_px // sf
        if overlap_latent >= tile_latent:
            raise ValueError(f"tile_overlap ({overlap_px}px) must be smaller than tile_size "
                             f"({tile_px}px)")
        if tile_latent >= max(h_lat, w_lat):
            tile_latent, overlap_latent = None, 0  # one tile covers the frame: no tiling needed
    tiles = plan_tiles(h_lat, w_lat, sf, tile_latent, overlap_latent)
    cache = adapter.streaming == "cache"
    windows = plan_windows(t_lat, tm, chunk_latents, context, carries_cache=cache,
                           spans=adapter.chunk_spans(t_lat, chunk_latents) if cache else None)
    return DecodePlan(adapter.name, adapter.streaming, tuple(latents.shape), tm.pixel_frames(t_lat),
                      height, width, chunk_latents, context, blend, tile_latent, overlap_latent,
                      windows, tiles)


def _decode_window(adapter: FamilyAdapter, z: torch.Tensor, window: Window, tiles: list[Tile],
                   states: list, masks: list[torch.Tensor], device: torch.device,
                   dtype: torch.dtype, split: WorkSplit | None = None) -> torch.Tensor | None:
    """Decode one window, all its tiles, blended into one float32 buffer on ``device``.

    ``split`` (tile mode): this process decodes only its own tiles and the writing process blends
    every tile, received in tile order, exactly as one process would; the others return ``None``.
    """
    zw = z[:, :, window.latents.as_slice()]
    first = window.latents.start == 0
    if split is None and len(tiles) == 1:
        piece = adapter.decode_piece(zw.to(device, dtype), states[0], first)
        return piece.float()

    def decode_tile(i: int) -> torch.Tensor:
        tile = tiles[i]
        zt = zw[:, :, :, tile.rows.as_slice(), tile.cols.as_slice()].to(device, dtype)
        return adapter.decode_piece(zt, states[i], first).float()

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


def decode_latents(vae: torch.nn.Module, latents: torch.Tensor, *, chunk_frames: int | None = None,
                   overlap_frames: int | None = None, tile_size: int | None = None,
                   tile_overlap: int | None = None, output_type: OutputType = "uint8",
                   progress: Callable[[int, int], None] | None = None,
                   decode_kwargs: dict | None = None, split: WorkSplit | None = None) -> Iterator:
    """Decode ``latents`` (exactly what ``vae.decode`` takes) as an iterator of chunks, in order.

    ``output_type="pt"``: float32 chunks in the layout of ``vae.decode(latents).sample``;
    concatenating them along the VAE's time axis reproduces the full decode (exactly for
    cache-carrying families without spatial tiling). ``"uint8"``: ``(T, H, W, 3)`` uint8 CPU
    tensors, ready for :class:`vidmem.VideoWriter` (batch size 1 only).

    ``decode_kwargs`` are extra arguments of the VAE's own ``decode`` (e.g. LTX's ``temb``).
    ``progress(frames_done, frames_total)`` is called after each chunk. Options are checked (see
    :func:`plan_decode`) before anything is decoded.

    ``split``: share this decode with other processes (a :class:`vidmem.parallel.DecodeSplit`;
    every process calls this with the same latents and options, and only rank 0's iterator yields
    chunks, equal to a single process's).
    """
    if output_type not in ("uint8", "pt"):
        raise ValueError(f"output_type must be 'uint8' or 'pt', got {output_type!r}")
    adapter = adapter_for(vae, decode_kwargs)
    plan = plan_decode(vae, latents, chunk_frames=chunk_frames, overlap_frames=overlap_frames,
                       tile_size=tile_size, tile_overlap=tile_overlap, adapter=adapter)
    z = adapter.to_canonical(latents)
    if z.device.type != "meta" and not bool(torch.isfinite(z).all()):
        bad = int(z.numel() - torch.isfinite(z).sum())
        raise ValueError(f"the latents contain {bad} NaN/inf value(s) of {z.numel()}: the "
                         f"denoising diverged (common with fp16: try bf16 or fp32, or another "
                         f"seed); nothing was decoded")
    if output_type == "uint8" and z.shape[0] != 1:
        raise ValueError(f"uint8 output decodes one video at a time; got a batch of "
                         f"{z.shape[0]} (pass one video's latents or output_type='pt')")
    return _stream(adapter, z, plan, output_type, progress, split)


def device_chunks(adapter: FamilyAdapter, z: torch.Tensor, plan: DecodePlan,
                  output_type: OutputType, windows: list[Window] | None = None,
                  split: WorkSplit | None = None, conv_workspace: int | None = None) -> Iterator:
    """The device side of the stream: for each window (default: all of ``plan.windows``; else a
    prefix of them) decode its tiles, blend, cross-fade and convert, and yield ``(frames,
    chunk)``: the chunk *on the VAE's device* (uint8 ``(T, H, W, 3)``, or the native float32
    layout for ``"pt"``) and its number of frames; empty chunks are skipped.

    ``split``: this process's share of a decode split over several (:mod:`vidmem.parallel`):
    tiles (or windows) decoded elsewhere arrive through it, and a process that does not blend
    yields nothing.

    ``conv_workspace``: cap (bytes) on the column buffer of CPU ``slow_conv3d`` calls
    (:class:`~vidmem.decode.conv_workspace.BoundedConvWorkspace`; ``None``: torch's own calls).

    Separate from the host transfer so the memory simulator (``vidmem.offload.stages``) runs
    exactly this code on fake tensors."""
    device, dtype = _vae_device_dtype(adapter.vae)
    feather = plan.tile_overlap_latent * adapter.spatial_factor
    masks = [tile_mask(t, feather).to(device) for t in plan.tiles] if len(plan.tiles) > 1 else []
    states = [adapter.new_state() for _ in plan.tiles]
    count = len(plan.windows) if windows is None else len(windows)

    def window_pixels(k: int) -> torch.Tensor | None:
        """Window ``k``, all tiles blended and clamped (``None``: another process blends it)."""
        nonlocal states
        if adapter.streaming == "window":
            states = [adapter.new_state() for _ in plan.tiles]
        tiles_split = split if split is not None and split.mode == "tiles" else None
        # The mode is entered per window: never left active across a yield.
        with BoundedConvWorkspace(conv_workspace) if conv_workspace else nullcontext():
            out = _decode_window(adapter, z, plan.windows[k], plan.tiles, states, masks, device,
                                 dtype, tiles_split)
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
                 else adapter.from_canonical(out))
        del out
        yield frames, chunk
        del chunk  # the consumer has it; do not keep it alive while decoding the next


def _stream(adapter: FamilyAdapter, z: torch.Tensor, plan: DecodePlan, output_type: OutputType,
            progress: Callable[[int, int], None] | None,
            split: WorkSplit | None = None) -> Iterator:
    device, _ = _vae_device_dtype(adapter.vae)
    # CUDA uint8 chunks reach the host through one reused pinned buffer, each copy overlapped
    # with the next chunk's decode; elsewhere chunks are handed out as they are made.
    stager = HostStager(device) if device.type == "cuda" and output_type == "uint8" else None
    reported = 0
    conv_workspace = None
    if device.type == "cpu":  # host memory is where a CPU decode peaks
        allocator.tune_for_decode()
        conv_workspace = configured_max_bytes()
    done = 0
    try:
        if split is not None:
            split.start(plan, device)
        with torch.no_grad():
            for frames, chunk in device_chunks(adapter, z, plan, output_type, split=split,
                                               conv_workspace=conv_workspace):
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
