"""Context parallelism for the denoising transformer, through diffusers' own API.

Why diffusers' and not our own: diffusers (>= 0.36) ships ring and Ulysses attention for the
transformers that declare a ``_cp_plan`` (Wan, LTX, ...), applied with
``transformer.enable_parallelism(config=ContextParallelConfig(...))``; each rank then holds a
slice of the token sequence and the transformer's output is gathered, so every rank ends each
step with the same full latents. vidmem only decides whether it can be used and with which
degrees.

Where it cannot (no ``_cp_plan``, no CUDA/NCCL: diffusers 0.42 builds its device mesh on the
accelerator and has no CPU path; a sub-group rather than the world), every rank denoises the same
latents redundantly with the same seed and only the decode is split. That is what happens on CPU
with gloo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import InvalidOptions
from .group import Group
from .session import describe

log = logging.getLogger("vidmem")


@dataclass(frozen=True)
class ContextParallel:
    """What :func:`enable_context_parallel` did: the degrees used, or why it was not used."""

    enabled: bool
    ring_degree: int = 1
    ulysses_degree: int = 1
    reason: str = ""

    def __str__(self) -> str:
        if self.enabled:
            return (f"context parallelism: ring {self.ring_degree} x ulysses "
                    f"{self.ulysses_degree} (diffusers)")
        return (f"context parallelism not used ({self.reason}): every rank denoises the same "
                f"latents; the decode is split")


def choose_degrees(world_size: int, heads: int | None, ring_degree: int | None = None,
                   ulysses_degree: int | None = None) -> tuple[int, int]:
    """``(ring, ulysses)`` whose product is ``world_size``.

    Given degrees are completed (one given: the other is ``world_size`` divided by it). Neither
    given: Ulysses over every rank when the attention heads divide evenly (one all-to-all per
    attention, the lower latency on fast links), else ring attention (no constraint on heads).
    """
    for name, value in (("ring_degree", ring_degree), ("ulysses_degree", ulysses_degree)):
        if value is not None and (value < 1 or world_size % value):
            raise InvalidOptions(f"{name} {value} must be a divisor of the number of processes "
                             f"({world_size})")
    if ring_degree is None and ulysses_degree is None:
        if heads is not None and heads % world_size == 0:
            return 1, world_size
        return world_size, 1
    ring = ring_degree if ring_degree is not None else world_size // ulysses_degree
    ulysses = ulysses_degree if ulysses_degree is not None else world_size // ring
    if ring * ulysses != world_size:
        raise InvalidOptions(f"ring_degree x ulysses_degree ({ring} x {ulysses}) must equal the "
                         f"number of processes ({world_size})")
    if heads is not None and heads % ulysses:
        raise InvalidOptions(f"ulysses_degree {ulysses} must divide the transformer's {heads} "
                         f"attention heads")
    return ring, ulysses


def unavailable_reason(pipe: Any, group: Group, device: str | torch.device | None = None
                       ) -> str | None:
    """Why diffusers' context parallelism cannot be used for ``pipe`` on ``group`` (else
    ``None``). ``device``: where the transformer will run (default: where its weights are)."""
    transformer = getattr(pipe, "transformer", None)
    if transformer is None or not hasattr(transformer, "enable_parallelism"):
        return f"{type(pipe).__name__} has no diffusers transformer"
    if getattr(transformer, "_cp_plan", None) is None:
        return f"{type(transformer).__name__} declares no context-parallel plan in diffusers"
    if getattr(transformer, "_parallel_config", None) is not None:
        return "the transformer already has a parallel config"
    if not (torch.cuda.is_available() and "nccl" in group.backend):
        return ("it needs CUDA GPUs and the NCCL backend; diffusers builds its device mesh on the "
                f"accelerator (backend here: {group.backend})")
    if group.pg is not dist.group.WORLD:
        return "diffusers' context parallelism spans the world group, not a sub-group"
    if device is None:
        param = next(transformer.parameters(), None)
        device = param.device if param is not None else "cpu"
    if torch.device(device).type != "cuda":
        return (f"the transformer runs on {torch.device(device).type}, not on the GPU (move the "
                f"pipeline to the GPU, or give a --budget)")
    return None


def enable_context_parallel(pipe: Any, group: Group, ring_degree: int | None = None,
                            ulysses_degree: int | None = None,
                            device: str | torch.device | None = None) -> ContextParallel:
    """Split ``pipe.transformer``'s attention over ``group`` with diffusers' context parallelism
    when it can be (see the module docstring); never raises for an unsupported setup, it says why
    in the result. Call once, on every rank, before rendering; the transformer stays parallel.
    ``device``: where the transformer will run, if not where its weights are now (an offload
    plan moves it there per stage). Bad degrees (not dividing the world size or the heads) raise
    ``ValueError``."""
    reason = unavailable_reason(pipe, group, device)
    if reason is not None:
        if ring_degree is not None or ulysses_degree is not None:
            log.warning("ignoring the ring/ulysses degrees: context parallelism not used (%s)",
                        reason)
        return ContextParallel(False, reason=reason)
    transformer = pipe.transformer
    heads = getattr(transformer.config, "num_attention_heads", None)
    ring, ulysses = choose_degrees(group.size, heads, ring_degree, ulysses_degree)
    from diffusers import ContextParallelConfig

    try:
        transformer.enable_parallelism(
            config=ContextParallelConfig(ring_degree=ring, ulysses_degree=ulysses))
    except Exception as e:  # noqa: BLE001 - fall back to redundant denoising, and say why
        return ContextParallel(False, reason=f"diffusers refused: {describe(e)}")
    return ContextParallel(True, ring, ulysses)
