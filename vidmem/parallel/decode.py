"""What every rank of a split decode must share before decoding: rank 0's inputs.

Why: a split decode is only equal to a single process's if every rank decodes the same latents
with the same plan. Ranks that denoised redundantly usually hold the same latents, but GPU kernels
need not be deterministic, and the automatic tile size depends on each device's free memory; a
noise-injecting decoder (LTX) also draws from the global RNG. So rank 0's latents (the ones it
checkpoints), decode arguments, RNG state and resolved tile size are sent to every rank once, in
one agreement, before the decode starts.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from ..checkpoint import capture_rng
from ..decode import plan_decode
from ..decode.stream import free_device_bytes_for
from .session import SplitSession


def _to_cpu(value: Any) -> Any:
    return value.detach().cpu() if isinstance(value, torch.Tensor) else value


def share_decode_input(session: SplitSession, vae: torch.nn.Module, latents: torch.Tensor,
                       decode_kwargs: dict | None, options: dict[str, Any]
                       ) -> tuple[torch.Tensor, dict | None, int | None]:
    """Rank 0's ``latents``, ``decode_kwargs`` and tile size (pixels; 0 = untiled), on every rank,
    and every rank's global RNG set to rank 0's. ``options``: the decode's tiling options
    (``chunk_frames``, ``overlap_frames``, ``tile_size``, ``tile_overlap``)."""
    payload = None
    if session.is_writer:
        tile_size = options.get("tile_size")
        if tile_size is None:  # automatic: resolve it here, where the plan is made
            plan = plan_decode(vae, latents, decode_kwargs=decode_kwargs,
                               free_device_bytes=free_device_bytes_for(vae), **options)
            tile_size = (plan.tile_latent * plan.facts.spatial_factor
                         if plan.tile_latent else 0)
        payload = {"latents": _to_cpu(latents),
                   "decode_kwargs": {k: _to_cpu(v) for k, v in (decode_kwargs or {}).items()},
                   "rng": capture_rng(), "tile_size": tile_size}
    shared = session.share(payload)
    if not session.is_writer:
        device = latents.device if isinstance(latents, torch.Tensor) else torch.device("cpu")
        latents = shared["latents"].to(device)
        decode_kwargs = shared["decode_kwargs"]
        torch.set_rng_state(shared["rng"]["cpu"])
        if "cuda" in shared["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state(shared["rng"]["cuda"])
    return latents, decode_kwargs, shared["tile_size"]


def run_share(chunks: Iterator[torch.Tensor]) -> None:
    """A rank other than 0: run its part of the decode (its iterator yields no frames)."""
    for chunk in chunks:
        raise RuntimeError(f"a rank other than 0 received decoded frames {tuple(chunk.shape)}; "
                           f"only rank 0 blends and writes")
