"""Out-of-memory fallback for the decode: retry with smaller pieces instead of failing.

Why: a long render's decode runs after the expensive denoising; if the first guess at chunk and
tile sizes does not fit (other processes on the GPU, a fragmented allocator, a defaults estimate
that was optimistic), failing throws away the user's time. diffusers' own guidance for memory is a
ladder: offload the models (vidmem's offload plan already moves everything but the VAE off the
device before the decode), then tile the VAE, then stream. Here, within the decode: first halve the
temporal chunk (cheap: for cache-carrying families the output is identical), and once chunks are a
single latent frame, tile spatially and halve the tiles down to the family's minimum.

A retry restarts the stream with the smaller plan and skips the frames already delivered, so the
consumer (the writer) sees every frame exactly once, in order. For cache-carrying families the
restarted stream is the same computation, so the file is identical to a run that never ran out of
memory (when only the chunk size changed); a spatial tiling change is visible only as the
difference between tiled and untiled decodes, from the retry point on.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
from typing import Any, Callable, Iterator

import torch

from .families import adapter_for
from .options import DecodeOptions
from .stream import (DEFAULT_TILE_OVERLAP, DecodePlan, WorkSplit, decode_latents,
                     free_device_bytes_for, plan_decode)

log = logging.getLogger("vidmem")

#: messages of allocation failures that are not ``torch.OutOfMemoryError`` (CPU, some backends).
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "failed to allocate")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure (CUDA or host) that smaller pieces may avoid."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in _OOM_MESSAGES)


def smaller_options(plan: DecodePlan, spatial_factor: int, time_factor: int, min_tile_latent: int,
                    options: DecodeOptions) -> DecodeOptions | None:
    """The next rung down from ``plan``: half the chunk, else (half) tiles; ``None`` at the end."""
    if plan.chunk_latents > 1:
        chunk_frames = max(1, plan.chunk_latents // 2) * time_factor
        overlap = options.overlap_frames
        if overlap is not None and overlap >= chunk_frames:
            overlap = chunk_frames - 1
        return dataclasses.replace(options, chunk_frames=chunk_frames, overlap_frames=overlap)
    h_lat, w_lat = plan.latent_shape[-2:]
    current = plan.tile_latent or max(h_lat, w_lat)
    tile = current // 2
    if tile < min_tile_latent:
        return None
    overlap_px = (plan.tile_overlap_latent * spatial_factor if plan.tile_latent
                  else DEFAULT_TILE_OVERLAP)
    overlap_latent = min(overlap_px // spatial_factor, tile // 4)
    return dataclasses.replace(options, tile_size=tile * spatial_factor,
                               tile_overlap=overlap_latent * spatial_factor)


def decode_with_fallback(vae: torch.nn.Module, latents: torch.Tensor,
                         options: DecodeOptions | None = None, *,
                         decode_kwargs: dict | None = None,
                         progress: Callable[[int, int], None] | None = None,
                         on_retry: Callable[[str], None] | None = None,
                         split: WorkSplit | None = None,
                         **shortcuts: Any) -> Iterator[torch.Tensor]:
    """:func:`vidmem.decode_latents` (uint8 chunks) that survives out-of-memory errors.

    ``options`` (a :class:`~vidmem.decode.options.DecodeOptions`) and the keyword shortcuts
    (``chunk_frames=``, ``tile_size=``, ...) are those of :func:`vidmem.decode_latents`; each
    retry decodes with a smaller copy of them.

    On an allocation failure the current chunk is retried with the next smaller plan (see the
    module docstring); ``on_retry(message)`` is told each time (default: a log warning). When the
    smallest plan still fails, the error propagates.

    ``split`` (a decode shared by several processes): an allocation failure on any process is
    reported to all of them as the same error, so all retry with the same smaller plan.
    """
    options = DecodeOptions.build(options, **shortcuts)
    adapter = adapter_for(vae, decode_kwargs)
    delivered = 0
    notify = on_retry or (lambda msg: log.warning("%s", msg))

    def planned(options: DecodeOptions) -> DecodePlan:
        """The plan the decode of ``options`` makes (the free memory read as it reads it)."""
        free = free_device_bytes_for(vae) if options.tile_size is None else None
        return plan_decode(vae, latents, options, decode_kwargs=decode_kwargs,
                           free_device_bytes=free)

    while True:
        plan = planned(options)
        produced = 0
        report = (lambda done, total: progress(max(done, delivered), total)) if progress else None
        try:
            for chunk in decode_latents(vae, latents, options, output_type="uint8", split=split,
                                        decode_kwargs=decode_kwargs, progress=report):
                n = chunk.shape[0]
                skip = min(n, max(0, delivered - produced))
                produced += n
                fresh = chunk[skip:] if skip < n else None
                del chunk  # only the consumer holds a chunk while the next one decodes
                if fresh is not None:
                    delivered += n - skip
                    yield fresh
                    del fresh
            return
        except Exception as e:  # noqa: BLE001 - only allocation failures are retried
            if not is_out_of_memory(e):
                raise
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        assert plan.facts is not None
        smaller = smaller_options(plan, plan.facts.spatial_factor, plan.facts.time_map.factor,
                                  adapter.min_tile_latent, options)
        if smaller is None:
            raise torch.OutOfMemoryError(
                f"the decode ran out of memory even with {plan.summary()} ({error}); free device "
                f"memory (a smaller --budget for the other components) or decode on another "
                f"device")
        options = smaller
        notify(f"out of memory at frame {delivered} ({error}); retrying with "
               f"{planned(options).summary()}")
