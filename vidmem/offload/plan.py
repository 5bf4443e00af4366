"""Offload plans: which pipeline component stays on the accelerator, which moves in for its stage,
and which is streamed block by block, decided from measured weight sizes, simulated activations
and a budget.

Why a plan object: diffusers offers three manual levers (model, sequential and group offload) and
leaves the choice to the user. A plan is pure data, computed before anything moves, so it can be
printed, serialized, tested on a machine without CUDA, and applied separately (``apply.py``).
This module is only that data and its arithmetic: it reads no module and no device. What is
measured (weights, block lists, free device memory: :mod:`~vidmem.offload.introspect`) and
simulated (activations: :mod:`~vidmem.offload.stages`) is gathered by
:func:`vidmem.offload.planner.plan_offload`, which then runs the arithmetic here.

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
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..errors import BudgetTooSmall
from ..memory import format_bytes

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




# --- the arithmetic around the assignment (inputs measured by the planner) -------------------
def components_from(sizes: list[Any]) -> list[ComponentPlan]:
    """One ``resident`` :class:`ComponentPlan` per measured component
    (:class:`~vidmem.offload.introspect.ComponentSizes`), to be assigned."""
    return [ComponentPlan(s.name, s.weights_bytes, "resident", s.blocks, s.block_bytes,
                          leftover_bytes=s.leftover_bytes) for s in sizes]


def auto_budget_from(free: int, total: int, device: str) -> tuple[int, str]:
    """``budget="auto"``: ``free`` device memory minus a margin (:data:`AUTO_MARGIN_MIN_BYTES` or
    :data:`AUTO_MARGIN_FRACTION` of ``total``, whichever is larger). Returns ``(bytes, note)``."""
    margin = max(AUTO_MARGIN_MIN_BYTES, int(AUTO_MARGIN_FRACTION * total))
    budget = free - margin
    if budget <= 0:
        raise BudgetTooSmall(f"budget 'auto': only {format_bytes(free)} of {format_bytes(total)} "
                             f"is free on {device}, less than the {format_bytes(margin)} margin")
    return budget, (f"auto: {format_bytes(free)} free of {format_bytes(total)} minus "
                    f"{format_bytes(margin)} margin")


def decode_tile_candidates(height: int, width: int, smallest_tile: int,
                           tile_overlap: int | None) -> list[int]:
    """Tile edges (pixels, 0 = untiled) to try for a CUDA decode of ``height`` x ``width``
    frames, best first: untiled, then each of :data:`DECODE_TILE_CANDIDATES` that is at least
    the family's ``smallest_tile``, smaller than the frame and larger than the overlap."""
    overlap = tile_overlap if tile_overlap is not None else 64
    tiles = [t for t in DECODE_TILE_CANDIDATES
             if smallest_tile <= t < max(height, width) and t > overlap]
    return [0] + tiles


def all_resident(comps: list[ComponentPlan]) -> None:
    """The CPU plan: everything stays where it is (there is nothing to offload to); each stage
    peak is every weight plus that stage's activations, in host memory."""
    resident = sum(c.device_bytes for c in comps)
    for c in comps:
        c.strategy = "resident"
        c.stage_peak_bytes = resident + c.activation_bytes


def prefer_fp8(comps: list[ComponentPlan], arithmetic: _Budget,
               fp8_sizes: dict[str, tuple[int, int]]) -> None:
    """Store in float8 each component that would stream its blocks, if that lets it run whole
    (or stay resident); keep the bf16 assignment otherwise. ``fp8_sizes``: per such component,
    ``(stored bytes, upcast bytes)`` (:func:`vidmem.offload.fp8.fp8_sizes`)."""
    for c in sorted((c for c in comps if c.strategy == "blocks"), key=lambda c: -c.weights_bytes):
        stored, upcast = fp8_sizes[c.name]
        before = [(x.strategy, x.blocks_per_group, x.stage_peak_bytes, x.prefetch) for x in comps]
        c.fp8, c.fp8_bytes, c.fp8_upcast_bytes = True, stored, upcast
        try:
            arithmetic.assign()
            improved = c.strategy != "blocks"
        except BudgetTooSmall:
            improved = False
        if not improved:
            c.fp8, c.fp8_bytes, c.fp8_upcast_bytes = False, 0, 0
            for x, (strategy, group, peak, prefetch) in zip(comps, before):
                x.strategy, x.blocks_per_group, x.stage_peak_bytes, x.prefetch = \
                    strategy, group, peak, prefetch
