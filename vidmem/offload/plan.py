"""Offload plans: which pipeline component stays on the accelerator, which moves in for its stage,
and which is streamed block by block, decided from measured weight sizes, simulated activations
and a budget.

Why a plan object: diffusers offers three manual levers (model, sequential and group offload) and
leaves the choice to the user. A plan is pure data, computed before anything moves, so it can be
printed, serialized, tested on a machine without CUDA, and applied separately (``apply.py``).

Each component has a *stage*: the text encoder's is the prompt encoding, a denoiser's one
denoising step as the pipeline runs it, the VAE's the streaming decode. The predicted device peak
of a stage is

    overhead + resident weights + the stage component's weights in flight + its activations

* ``overhead``: :data:`~vidmem.offload.simulate.CUDA_CONTEXT_BYTES` +
  :data:`~vidmem.offload.simulate.KERNEL_WORKSPACE_BYTES` on CUDA (only the workspace for
  ``budget="auto"``, whose free-memory reading already excludes the context); 0 on the CPU.
* weights in flight: nothing extra for a ``resident`` component; its whole size for ``model``;
  ``leftover + 2 x group`` for ``blocks`` (the group computing plus the next one being prefetched,
  and the modules outside the block list). A float8-stored component (``allow_fp8``) counts its
  float8 size plus its largest layer in the compute dtype (cast up while that layer runs).
* activations: simulated for the render's shape (:mod:`vidmem.offload.stages`): everything the
  stage allocates above the weights, the pipeline's live tensors included. ``reserve=`` replaces
  them, and the overhead, with one number for every stage ("keep this much free").

Choice rule: keep resident the largest components that still leave every other stage room (fewest
transfers); then each other component runs whole (``model``, moved in for its stage, the next one
prefetched when both fit) or, if even that does not fit, streams its blocks in the largest groups
that fit. With ``allow_fp8``, a component that would stream its blocks is stored in float8 instead
when that lets it run whole or stay resident (never otherwise: float8 costs precision, block
streaming only time). The smallest workable budget (in the error for a budget that is too small)
comes from the same numbers: single-block streaming of the largest stage.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import torch

from ..errors import BudgetTooSmall, InvalidOptions
from ..memory import format_bytes, parse_bytes

log = logging.getLogger("vidmem")

Strategy = Literal["resident", "model", "blocks"]

#: Fallback activation estimate, used only when a pipeline cannot be simulated (and said so).
DEFAULT_RESERVE_BYTES = 1 << 30
DEFAULT_RESERVE_FRACTION = 0.10
#: ``budget="auto"``: free device memory minus the larger of these (the caching allocator's
#: fragmentation and other processes' growth need room the plan does not see).
AUTO_MARGIN_MIN_BYTES = 256 << 20
AUTO_MARGIN_FRACTION = 0.05
#: Decode tile edges (pixels) the planner tries on CUDA, largest first, after "untiled".
DECODE_TILE_CANDIDATES = (1024, 768, 512, 384, 256, 192, 128)


def module_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """A module's parameters and buffers: what it holds on a device."""
    return list(module.parameters()) + list(module.buffers())


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for t in module_tensors(module):
        key = t.data_ptr() if t.device.type != "meta" else id(t)
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


def find_block_list(module: torch.nn.Module) -> tuple[str, torch.nn.ModuleList] | None:
    """The largest ``ModuleList`` of repeated blocks (transformer layers, encoder blocks)."""
    best = None
    best_bytes = 0
    for name, child in module.named_modules():
        if isinstance(child, torch.nn.ModuleList) and len(child) >= 2:
            size = module_bytes(child)
            if size > best_bytes:
                best, best_bytes = (name, child), size
    return best


@dataclass
class ComponentPlan:
    name: str
    #: weights as loaded (parameters and buffers)
    weights_bytes: int
    strategy: Strategy
    blocks: int = 0
    block_bytes: int = 0
    blocks_per_group: int = 0
    leftover_bytes: int = 0
    #: the stage's device memory above the weights (simulated, or the reserve)
    activation_bytes: int = 0
    stage_peak_bytes: int = 0
    #: the ``model`` component copied in on a side stream while this one runs (``None``: none,
    #: or the two together would not fit the budget).
    prefetch: str | None = None
    #: stored in float8, computed in its own dtype (diffusers layerwise casting)
    fp8: bool = False
    fp8_bytes: int = 0
    fp8_upcast_bytes: int = 0
    #: how the activations were obtained
    activation_detail: str = ""

    @property
    def bytes(self) -> int:
        """The weights as loaded (kept for code written before ``weights_bytes``)."""
        return self.weights_bytes

    @property
    def device_bytes(self) -> int:
        """What the component occupies on the device when it is there whole."""
        return self.fp8_bytes if self.fp8 else self.weights_bytes

    @property
    def running_bytes(self) -> int:
        """Extra weight memory while it computes (a float8 layer's upcast copy)."""
        return self.fp8_upcast_bytes if self.fp8 else 0

    @property
    def stage_need(self) -> int:
        """Device bytes of weights this component needs while it runs (beyond the resident
        set)."""
        if self.strategy == "blocks":
            return self.leftover_bytes + 2 * self.blocks_per_group * self.block_bytes
        if self.strategy == "resident":
            return self.running_bytes
        return self.device_bytes + self.running_bytes


@dataclass
class OffloadPlan:
    """The plan: per component, its weights, simulated activations, strategy and stage peak."""

    device: str
    budget_bytes: int
    #: ``reserve=``: working memory per stage that replaced the simulation (``None``: simulated)
    reserve_bytes: int | None = None
    components: list[ComponentPlan] = field(default_factory=list)
    #: CUDA context + kernel workspaces (0 on the CPU and under a reserve)
    overhead_bytes: int = 0
    #: "simulated", "reserve" or "estimate (...)"
    activation_source: str = "reserve"
    #: the render the activations were simulated for, e.g. "81 frames, 832x480"
    workload: str = ""
    #: the streaming decode the VAE stage was simulated with (summary, tile edge in pixels, 0:
    #: untiled); ``render`` should use this tile size (``vidmem render --budget`` does)
    decode: dict[str, Any] | None = None
    #: where the budget came from ("auto: ..." for budget="auto")
    budget_note: str = ""
    simulate_seconds: float = 0.0
    #: the smallest budget with which every stage fits (single-block streaming); on the CPU the
    #: predicted peak
    smallest_budget_bytes: int = 0

    @property
    def resident_bytes(self) -> int:
        return sum(c.device_bytes for c in self.components if c.strategy == "resident")

    @property
    def predicted_peak_bytes(self) -> int:
        return max((c.stage_peak_bytes for c in self.components),
                   default=self.resident_bytes + self.overhead_bytes)

    @property
    def decode_tile_size(self) -> int | None:
        """The decode tile edge (pixels) the plan was made for; 0: untiled; ``None``: unknown."""
        return None if self.decode is None else self.decode.get("tile_size")

    def component(self, name: str) -> ComponentPlan:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "budget_bytes": self.budget_bytes,
                "budget_note": self.budget_note, "reserve_bytes": self.reserve_bytes,
                "overhead_bytes": self.overhead_bytes,
                "activation_source": self.activation_source, "workload": self.workload,
                "predicted_peak_bytes": self.predicted_peak_bytes,
                "smallest_budget_bytes": self.smallest_budget_bytes,
                "simulate_seconds": round(self.simulate_seconds, 3),
                "components": [asdict(c) for c in self.components],
                "decode": self.decode}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def apply(self, pipe: Any, **kwargs: Any):
        """Install the plan on ``pipe`` (see :func:`vidmem.offload.apply.apply_plan`)."""
        from .apply import apply_plan

        return apply_plan(pipe, self, **kwargs)

    def __str__(self) -> str:
        if self.reserve_bytes is not None:
            working = f"reserve {format_bytes(self.reserve_bytes)} per stage"
        else:
            working = (f"activations {self.activation_source}"
                       + (f" for {self.workload}" if self.workload else "")
                       + (f", + {format_bytes(self.overhead_bytes)} CUDA context/workspaces"
                          if self.overhead_bytes else ""))
        budget = format_bytes(self.budget_bytes) + (f" ({self.budget_note})"
                                                   if self.budget_note else "")
        lines = [f"offload plan for {self.device}: budget {budget}; {working}; predicted peak "
                 f"{format_bytes(self.predicted_peak_bytes)}",
                 f"{'component':<16} {'weights':>11} {'activations':>12}  {'strategy':<9} "
                 f"{'stage peak':>11}  detail"]
        for c in self.components:
            details = {"resident": ["on the device throughout"],
                       "model": ["moved in for its stage"], "blocks": []}[c.strategy]
            if c.strategy == "blocks":
                details.append(f"{c.blocks} blocks of {format_bytes(c.block_bytes)}, "
                               f"{c.blocks_per_group} per group")
            if c.fp8:
                details.append(f"float8 storage ({format_bytes(c.fp8_bytes)})")
            if c.prefetch:
                details.append(f"prefetches {c.prefetch}")
            lines.append(f"{c.name:<16} {format_bytes(c.weights_bytes):>11} "
                         f"{format_bytes(c.activation_bytes):>12}  {c.strategy:<9} "
                         f"{format_bytes(c.stage_peak_bytes):>11}  {'; '.join(details)}")
        return "\n".join(lines)


def offload_sequence(pipe: Any) -> list[tuple[str, torch.nn.Module]]:
    """The pipeline's modules in ``model_cpu_offload_seq`` order, then any others."""
    seq = [n for n in (getattr(pipe, "model_cpu_offload_seq", None) or "").split("->") if n]
    modules = {name: comp for name, comp in getattr(pipe, "components", {}).items()
               if isinstance(comp, torch.nn.Module)}
    ordered = [(n, modules[n]) for n in seq if n in modules]
    ordered += [(n, m) for n, m in modules.items() if n not in seq]
    return ordered


def _is_vae(name: str, module: torch.nn.Module) -> bool:
    return name.startswith("vae") or type(module).__name__.startswith(("Autoencoder", "VQModel"))


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | None) -> str:
    """``None`` -> the default (cuda if available); ``cuda``, ``cuda:N`` and ``cpu`` pass;
    anything else is refused."""
    if device is None:
        return _default_device()
    text = str(device).strip().lower()
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise InvalidOptions(f"unknown device {device!r}: use cuda, cuda:N or cpu")


def auto_budget(device: str) -> tuple[int, str]:
    """``budget="auto"``: the device's free memory now minus a margin
    (:data:`AUTO_MARGIN_MIN_BYTES` or :data:`AUTO_MARGIN_FRACTION` of the total, whichever is
    larger). Returns ``(bytes, note)``. Needs CUDA."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        raise InvalidOptions("budget 'auto' reads the free memory of a CUDA device, and there is none "
                         "here; give a size such as 8GiB")
    free, total = torch.cuda.mem_get_info(torch.device(device))
    margin = max(AUTO_MARGIN_MIN_BYTES, int(AUTO_MARGIN_FRACTION * total))
    budget = free - margin
    if budget <= 0:
        raise BudgetTooSmall(f"budget 'auto': only {format_bytes(free)} of {format_bytes(total)} is "
                         f"free on {device}, less than the {format_bytes(margin)} margin")
    return budget, (f"auto: {format_bytes(free)} free of {format_bytes(total)} minus "
                    f"{format_bytes(margin)} margin")


def _components(pipe: Any) -> list[ComponentPlan]:
    comps = []
    for name, module in offload_sequence(pipe):
        size = module_bytes(module)
        # VAEs are never block-streamed: their decode is already tiled and chunked by vidmem, and
        # group offloading does not work well with VAE tiling (diffusers #12096).
        found = None if _is_vae(name, module) else find_block_list(module)
        blocks = len(found[1]) if found else 0
        block_bytes = max((module_bytes(b) for b in found[1]), default=0) if found else 0
        leftover = size - (module_bytes(found[1]) if found else size)
        comps.append(ComponentPlan(name, size, "resident", blocks, block_bytes,
                                   leftover_bytes=leftover if found else size))
    return comps


class _Budget:
    """The arithmetic of one assignment (module docstring)."""

    def __init__(self, comps: list[ComponentPlan], budget: int, overhead: int,
                 excluded: set[str]):
        self.comps = comps
        self.budget = budget
        self.overhead = overhead
        self.excluded = excluded

    @staticmethod
    def whole(c: ComponentPlan) -> int:
        return c.device_bytes + c.running_bytes

    def min_need(self, c: ComponentPlan) -> int:
        if c.blocks and not c.fp8:
            return c.leftover_bytes + 2 * c.block_bytes
        return self.whole(c)

    def smallest(self) -> int:
        """The smallest budget with which every stage fits (single-block streaming)."""
        excluded_bytes = sum(c.device_bytes for c in self.comps if c.name in self.excluded)
        needs = [c.running_bytes + c.activation_bytes for c in self.comps
                 if c.name in self.excluded]
        needs += [self.min_need(c) + c.activation_bytes for c in self.comps
                  if c.name not in self.excluded]
        return self.overhead + excluded_bytes + max(needs, default=0)

    def assign(self) -> None:
        """Set strategies, groups, stage peaks and prefetches (raises if nothing fits)."""
        comps, budget, overhead = self.comps, self.budget, self.overhead
        smallest = self.smallest()
        if smallest > budget:
            raise BudgetTooSmall(f"budget {format_bytes(budget)} is too small for this pipeline even "
                             f"with block streaming; the smallest budget that would work is "
                             f"{format_bytes(smallest)}")
        excluded_bytes = sum(c.device_bytes for c in comps if c.name in self.excluded)
        # Block streaming costs transfers at every denoising step, model offload one per render,
        # so first: only what cannot run whole even alone is streamed; then keep resident the
        # largest components that leave every other stage room to run (whole, or streamed).
        must_stream = {c.name for c in comps if c.name not in self.excluded
                       and overhead + excluded_bytes + self.whole(c) + c.activation_bytes > budget}

        def fits(resident: set[str]) -> bool:
            used = sum(c.device_bytes for c in comps if c.name in resident)
            for c in comps:
                need = (c.running_bytes if c.name in resident
                        else self.min_need(c) if c.name in must_stream else self.whole(c))
                if overhead + used + need + c.activation_bytes > budget:
                    return False
            return True

        resident = set(self.excluded)
        for c in sorted((c for c in comps if c.name not in self.excluded | must_stream),
                        key=lambda c: -c.device_bytes):
            if fits(resident | {c.name}):
                resident.add(c.name)
        used = sum(c.device_bytes for c in comps if c.name in resident)
        for c in comps:
            c.prefetch = None
            if c.name in resident:
                c.strategy, c.blocks_per_group = "resident", 0
            elif overhead + used + self.whole(c) + c.activation_bytes <= budget:
                c.strategy, c.blocks_per_group = "model", 0
            else:
                c.strategy = "blocks"
                room = budget - overhead - used - c.activation_bytes - c.leftover_bytes
                c.blocks_per_group = max(1, min(c.blocks, room // (2 * max(c.block_bytes, 1))))
            c.stage_peak_bytes = overhead + used + c.stage_need + c.activation_bytes
        # Prefetch: while a model component runs, copy the next one in on a side stream, if both
        # fit beside the resident set. Its stage peak then includes the incoming component.
        for i, c in enumerate(comps):
            later = [x for x in comps[i + 1:] if x.strategy != "resident"]
            nxt = later[0] if later else None
            if c.strategy == "model" and nxt is not None and nxt.strategy == "model" \
                    and c.stage_peak_bytes + nxt.device_bytes <= budget:
                c.prefetch = nxt.name
                c.stage_peak_bytes += nxt.device_bytes


def _simulation_target(device: str) -> str:
    return "cpu" if device == "cpu" else "cuda"


def _decode_candidates(pipe: Any, workload: Any) -> list[int]:
    """Tile edges (pixels, 0 = untiled) to try for the CUDA decode, best first."""
    from ..decode.families import adapter_for
    from .stages import resolved_size

    _, height, width = resolved_size(pipe, workload)
    if not isinstance(height, int) or not isinstance(width, int):
        return [0]
    adapter = adapter_for(pipe.vae)
    smallest = adapter.min_tile_latent * adapter.spatial_factor
    overlap = workload.tile_overlap if workload.tile_overlap is not None else 64
    tiles = [t for t in DECODE_TILE_CANDIDATES
             if smallest <= t < max(height, width) and t > overlap]
    return [0] + tiles


def _simulate_activations(pipe: Any, comps: list[ComponentPlan], workload: Any, device: str,
                          budget: int, overhead: int, excluded: set[str]) -> dict[str, Any]:
    """Simulate every stage; on CUDA without a fixed tile size, choose the largest decode tile
    whose stage fits beside the components that must stay (returns the decode description)."""
    from .stages import decode_latents_meta, simulate_decode, simulate_pipeline_call

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
    if workload.tile_size is not None or target == "cpu":
        tiles = [workload.tile_size]
    else:
        tiles = _decode_candidates(pipe, workload)
    excluded_bytes = sum(c.device_bytes for c in comps if c.name in excluded)
    chosen = None
    for tile in tiles:
        stage, decode_plan = simulate_decode(
            vae, latents, target=target, chunk_frames=workload.chunk_frames, tile_size=tile,
            tile_overlap=workload.tile_overlap, overlap_frames=workload.overlap_frames)
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
    from ..decode.families import adapter_for

    sf = adapter_for(vae).spatial_factor
    return {"summary": decode_plan.summary(), "frames": decode_plan.frames,
            "height": decode_plan.height, "width": decode_plan.width,
            "chunk_latents": decode_plan.chunk_latents, "tile_latent": decode_plan.tile_latent,
            "tiles": len(decode_plan.tiles),
            "tile_size": decode_plan.tile_latent * sf if decode_plan.tile_latent else 0,
            "activation_bytes": stage.activation_bytes}


def plan_offload(pipe: Any, budget: int | str, *, device: str | None = None,
                 reserve: int | str | None = None, num_frames: int | None = None,
                 height: int | None = None, width: int | None = None, workload: Any = None,
                 allow_fp8: bool = False,
                 activations_from: OffloadPlan | None = None) -> OffloadPlan:
    """Decide a strategy per component so that each stage's predicted peak fits ``budget``.

    ``budget``: bytes, a size string (``"8GiB"``) or ``"auto"`` (free CUDA memory minus a margin).
    The stages are simulated for a render of ``num_frames`` x ``height`` x ``width`` (or a
    :class:`~vidmem.offload.stages.Workload`; the pipeline's own defaults where not given);
    ``reserve`` replaces the simulated activations (and the CUDA overhead) with one number per
    stage. ``allow_fp8``: a component may be stored in float8 when that avoids streaming its
    blocks. See the module docstring for the arithmetic and the choice rule.
    ``activations_from``: reuse another plan's simulated activations and decode (the same
    pipeline, workload and device), e.g. to sweep budgets without simulating again.

    Raises ``ValueError`` naming the smallest workable budget when even single-block streaming
    does not fit. On ``device="cpu"`` (no accelerator) everything is ``resident``: there is
    nothing to offload to; the stage peaks are then host memory.
    """
    from .simulate import CUDA_CONTEXT_BYTES, KERNEL_WORKSPACE_BYTES
    from .stages import Workload

    device = check_device(device)
    note = ""
    if isinstance(budget, str) and budget.strip().lower() == "auto":
        budget_bytes, note = auto_budget(device)
        overhead = KERNEL_WORKSPACE_BYTES  # the context is already outside the free memory
    else:
        budget_bytes = parse_bytes(budget)
        overhead = 0 if device == "cpu" else CUDA_CONTEXT_BYTES + KERNEL_WORKSPACE_BYTES
    if workload is None:
        workload = Workload(num_frames, height, width)
    elif any(v is not None for v in (num_frames, height, width)):
        workload = replace(workload, num_frames=num_frames or workload.num_frames,
                           height=height or workload.height, width=width or workload.width)
    excluded = set(getattr(pipe, "_exclude_from_cpu_offload", []) or [])
    comps = _components(pipe)
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
        import time

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
        resident = sum(c.device_bytes for c in comps)
        for c in comps:
            c.strategy = "resident"
            c.stage_peak_bytes = resident + c.activation_bytes
        plan.smallest_budget_bytes = plan.predicted_peak_bytes
        return plan
    arithmetic = _Budget(comps, budget_bytes, overhead, excluded)
    plan.smallest_budget_bytes = arithmetic.smallest()
    arithmetic.assign()
    if allow_fp8:  # (the smallest budget stays the full-precision one: block streaming)
        _prefer_fp8(pipe, comps, arithmetic)
    return plan


def _prefer_fp8(pipe: Any, comps: list[ComponentPlan], arithmetic: _Budget) -> None:
    """Store in float8 each component that would stream its blocks, if that lets it run whole
    (or stay resident); keep the bf16 assignment otherwise."""
    from .fp8 import fp8_sizes

    modules = dict(offload_sequence(pipe))
    for c in sorted((c for c in comps if c.strategy == "blocks"), key=lambda c: -c.weights_bytes):
        sizes = fp8_sizes(modules[c.name])
        before = [(x.strategy, x.blocks_per_group, x.stage_peak_bytes, x.prefetch) for x in comps]
        c.fp8, c.fp8_bytes, c.fp8_upcast_bytes = True, sizes.stored_bytes, sizes.upcast_bytes
        try:
            arithmetic.assign()
            improved = c.strategy != "blocks"
        except ValueError:
            improved = False
        if not improved:
            c.fp8, c.fp8_bytes, c.fp8_upcast_bytes = False, 0, 0
            for x, (strategy, group, peak, prefetch) in zip(comps, before):
                x.strategy, x.blocks_per_group, x.stage_peak_bytes, x.prefetch = \
                    strategy, group, peak, prefetch
