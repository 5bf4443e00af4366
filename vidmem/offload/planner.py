"""Making an offload plan: measure the components, simulate each stage, then the arithmetic.

Why apart from :mod:`vidmem.offload.plan`: the plan is pure data and arithmetic; this module is
where the facts come from. It reads the components' sizes and the device
(:mod:`~vidmem.offload.introspect`), simulates the stages at the render's shape
(:mod:`~vidmem.offload.stages`), and hands the numbers to the plan's arithmetic
(:class:`~vidmem.offload.plan._Budget`, :func:`~vidmem.offload.plan.prefer_fp8`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from ..decode.families import adapter_for
from ..memory import format_bytes, parse_bytes
from .fp8 import fp8_sizes
from .introspect import check_device, component_sizes, cuda_memory, offload_sequence
from .plan import (DEFAULT_RESERVE_BYTES, DEFAULT_RESERVE_FRACTION, ComponentPlan, OffloadPlan,
                   _Budget, all_resident, auto_budget_from, components_from,
                   decode_tile_candidates, prefer_fp8)
from .simulate import CUDA_CONTEXT_BYTES, KERNEL_WORKSPACE_BYTES
from .stages import (Workload, decode_latents_meta, resolved_size, simulate_decode,
                     simulate_pipeline_call)

log = logging.getLogger("vidmem")


def _simulation_target(device: str) -> str:
    return "cpu" if device == "cpu" else "cuda"


def _decode_candidates(pipe: Any, workload: Workload) -> list[int]:
    """Tile edges (pixels, 0 = untiled) to try for the CUDA decode, best first."""
    _, height, width = resolved_size(pipe, workload)
    if not isinstance(height, int) or not isinstance(width, int):
        return [0]
    adapter = adapter_for(pipe.vae)
    return decode_tile_candidates(height, width, adapter.min_tile_latent * adapter.spatial_factor,
                                  workload.decode.tile_overlap)


def _simulate_activations(pipe: Any, comps: list[ComponentPlan], workload: Workload, device: str,
                          budget: int, overhead: int, excluded: set[str]) -> dict[str, Any]:
    """Simulate every stage; on CUDA without a fixed tile size, choose the largest decode tile
    whose stage fits beside the components that must stay (returns the decode description)."""
    target = _simulation_target(device)
    stages = simulate_pipeline_call(pipe, workload, target=target)
    for c in comps:
        if c.name in stages:
            c.activation_bytes = stages[c.name].activation_bytes
            c.activation_detail = stages[c.name].detail
    vae = getattr(pipe, "vae", None)
    latents = decode_latents_meta(pipe, workload)
    if vae is None or latents is None:
        return {}
    vae_plan = next((c for c in comps if getattr(pipe, c.name, None) is vae), None)
    options = workload.decode
    if options.tile_size is not None or target == "cpu":
        tiles = [options.tile_size]
    else:
        tiles = _decode_candidates(pipe, workload)
    excluded_bytes = sum(c.device_bytes for c in comps if c.name in excluded)
    chosen = None
    for tile in tiles:
        # ``with_`` keeps the workload's own tile size where the candidate is None (CPU, unset)
        stage, decode_plan = simulate_decode(vae, latents, options.with_(tile_size=tile),
                                             target=target)
        chosen = (tile, stage, decode_plan)
        vae_bytes = vae_plan.device_bytes if vae_plan is not None else 0
        if overhead + excluded_bytes + vae_bytes + stage.activation_bytes <= budget:
            break
    assert chosen is not None
    tile, stage, decode_plan = chosen
    if vae_plan is not None:
        pipeline_call = vae_plan.activation_bytes  # an image-to-video encode, if any
        if stage.activation_bytes >= pipeline_call:
            vae_plan.activation_bytes = stage.activation_bytes
            vae_plan.activation_detail = stage.detail
    sf = decode_plan.facts.spatial_factor
    return {"summary": decode_plan.summary(), "frames": decode_plan.frames,
            "height": decode_plan.height, "width": decode_plan.width,
            "chunk_latents": decode_plan.chunk_latents, "tile_latent": decode_plan.tile_latent,
            "tiles": len(decode_plan.tiles),
            "tile_size": decode_plan.tile_latent * sf if decode_plan.tile_latent else 0,
            "activation_bytes": stage.activation_bytes}


def plan_offload(pipe: Any, budget: int | str, *, device: str | None = None,
                 reserve: int | str | None = None, num_frames: int | None = None,
                 height: int | None = None, width: int | None = None,
                 workload: Workload | None = None, allow_fp8: bool = False,
                 activations_from: OffloadPlan | None = None) -> OffloadPlan:
    """Decide a strategy per component so that each stage's predicted peak fits ``budget``.

    ``budget``: bytes, a size string (``"8GiB"``) or ``"auto"`` (free CUDA memory minus a margin).
    The stages are simulated for a render of ``num_frames`` x ``height`` x ``width`` (or a
    :class:`~vidmem.offload.stages.Workload`; the pipeline's own defaults where not given);
    ``reserve`` replaces the simulated activations (and the CUDA overhead) with one number per
    stage. ``allow_fp8``: a component may be stored in float8 when that avoids streaming its
    blocks. See :mod:`vidmem.offload.plan` for the arithmetic and the choice rule.
    ``activations_from``: reuse another plan's simulated activations and decode (the same
    pipeline, workload and device), e.g. to sweep budgets without simulating again.

    Raises :class:`~vidmem.errors.BudgetTooSmall` (a ``ValueError``) naming the smallest workable
    budget when even single-block streaming does not fit. On ``device="cpu"`` (no accelerator)
    everything is ``resident``: there is nothing to offload to; the stage peaks are then host
    memory.
    """
    device = check_device(device)
    note = ""
    if isinstance(budget, str) and budget.strip().lower() == "auto":
        budget_bytes, note = auto_budget_from(*cuda_memory(device), device)
        overhead = KERNEL_WORKSPACE_BYTES  # the context is already outside the free memory
    else:
        budget_bytes = parse_bytes(budget)
        overhead = 0 if device == "cpu" else CUDA_CONTEXT_BYTES + KERNEL_WORKSPACE_BYTES
    if workload is None:
        workload = Workload(num_frames, height, width)
    elif any(v is not None for v in (num_frames, height, width)):
        workload = dataclasses.replace(workload, num_frames=num_frames or workload.num_frames,
                                       height=height or workload.height,
                                       width=width or workload.width)
    excluded = set(getattr(pipe, "_exclude_from_cpu_offload", []) or [])
    comps = components_from(component_sizes(pipe))
    plan = OffloadPlan(device, budget_bytes, None, comps, budget_note=note,
                       workload=workload.describe())
    if activations_from is not None and reserve is None:
        previous = {c.name: c for c in activations_from.components}
        for c in comps:
            if c.name in previous:
                c.activation_bytes = previous[c.name].activation_bytes
                c.activation_detail = previous[c.name].activation_detail
        plan.activation_source = activations_from.activation_source
        plan.workload, plan.decode = activations_from.workload, activations_from.decode
    elif reserve is not None:
        reserve_bytes = parse_bytes(reserve) if not (isinstance(reserve, int) and reserve == 0) \
            else 0
        for c in comps:
            c.activation_bytes, c.activation_detail = reserve_bytes, "reserve"
        plan.reserve_bytes, plan.activation_source, overhead = reserve_bytes, "reserve", 0
    else:
        t0 = time.perf_counter()
        try:
            plan.decode = _simulate_activations(pipe, comps, workload, device, budget_bytes,
                                                overhead, excluded) or None
            plan.activation_source = "simulated"
        except Exception as e:  # noqa: BLE001 - an unsupported pipeline still gets a plan
            estimate = DEFAULT_RESERVE_BYTES + int(DEFAULT_RESERVE_FRACTION * budget_bytes)
            log.warning("could not simulate %s's stages (%s: %s); using the estimate %s per "
                        "stage", type(pipe).__name__, type(e).__name__, e,
                        format_bytes(estimate))
            for c in comps:
                c.activation_bytes, c.activation_detail = estimate, "estimate"
            plan.activation_source = f"estimated (simulation failed: {type(e).__name__})"
        plan.simulate_seconds = time.perf_counter() - t0
    plan.overhead_bytes = overhead
    if device == "cpu":
        all_resident(comps)
        plan.smallest_budget_bytes = plan.predicted_peak_bytes
        return plan
    arithmetic = _Budget(comps, budget_bytes, overhead, excluded)
    plan.smallest_budget_bytes = arithmetic.smallest()
    arithmetic.assign()
    if allow_fp8:  # (the smallest budget stays the full-precision one: block streaming)
        modules = dict(offload_sequence(pipe))
        sizes = {c.name: fp8_sizes(modules[c.name]) for c in comps if c.strategy == "blocks"}
        prefer_fp8(comps, arithmetic, {name: (s.stored_bytes, s.upcast_bytes)
                                       for name, s in sizes.items()})
    return plan
