"""Offload plans: which pipeline component stays on the accelerator, which moves in for its stage,
and which is streamed block by block, decided by arithmetic on measured sizes and a budget.

Why a plan object: diffusers offers three manual levers (model, sequential and group offload) and
leaves the choice to the user. A plan is pure data, computed before anything moves, so it can be
printed, serialized, tested on a machine without CUDA, and applied separately (``apply.py``).

The prediction per stage is ``resident bytes + the stage component's need + reserve``, where the
need is its whole size for ``model`` and ``leftover + 2 x group`` for ``blocks`` (the group
computing plus the next one being prefetched, and the modules outside the block list).
``reserve`` is working memory for activations: by default ``DEFAULT_RESERVE_BYTES`` plus
``DEFAULT_RESERVE_FRACTION`` of the budget (a documented estimate, not a measurement: attention
and VAE activations depend on the clip's shape; pass ``reserve=`` to set it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

from ..memory import format_bytes, parse_bytes

Strategy = Literal["resident", "model", "blocks"]

DEFAULT_RESERVE_BYTES = 1 << 30  # 1 GiB for activations, the CUDA context's scratch, fragmentation
DEFAULT_RESERVE_FRACTION = 0.10


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
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
    bytes: int
    strategy: Strategy
    blocks: int = 0
    block_bytes: int = 0
    blocks_per_group: int = 0
    leftover_bytes: int = 0
    stage_peak_bytes: int = 0
    #: the ``model`` component copied in on a side stream while this one runs (``None``: none,
    #: or the two together would not fit the budget).
    prefetch: str | None = None

    @property
    def stage_need(self) -> int:
        """Device bytes this component needs while it runs (beyond the resident set)."""
        if self.strategy == "blocks":
            return self.leftover_bytes + 2 * self.blocks_per_group * self.block_bytes
        return self.bytes


@dataclass
class OffloadPlan:
    """The plan: per component, its measured bytes, strategy and predicted stage peak."""

    device: str
    budget_bytes: int
    reserve_bytes: int
    components: list[ComponentPlan] = field(default_factory=list)

    @property
    def resident_bytes(self) -> int:
        return sum(c.bytes for c in self.components if c.strategy == "resident")

    @property
    def predicted_peak_bytes(self) -> int:
        return max((c.stage_peak_bytes for c in self.components),
                   default=self.resident_bytes + self.reserve_bytes)

    def component(self, name: str) -> ComponentPlan:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "budget_bytes": self.budget_bytes,
                "reserve_bytes": self.reserve_bytes,
                "predicted_peak_bytes": self.predicted_peak_bytes,
                "components": [asdict(c) for c in self.components]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def apply(self, pipe: Any, **kwargs: Any):
        """Install the plan on ``pipe`` (see :func:`vidmem.offload.apply.apply_plan`)."""
        from .apply import apply_plan

        return apply_plan(pipe, self, **kwargs)

    def __str__(self) -> str:
        lines = [f"offload plan for {self.device}: budget {format_bytes(self.budget_bytes)}, "
                 f"reserve {format_bytes(self.reserve_bytes)}, predicted peak "
                 f"{format_bytes(self.predicted_peak_bytes)}",
                 f"{'component':<16} {'weights':>11}  {'strategy':<9} {'stage peak':>11}  detail"]
        for c in self.components:
            detail = (f"{c.blocks} blocks of {format_bytes(c.block_bytes)}, "
                      f"{c.blocks_per_group} per group" if c.strategy == "blocks" else "")
            if c.prefetch:
                detail = f"prefetches {c.prefetch}"
            lines.append(f"{c.name:<16} {format_bytes(c.bytes):>11}  {c.strategy:<9} "
                         f"{format_bytes(c.stage_peak_bytes):>11}  {detail}")
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


def plan_offload(pipe: Any, budget: int | str, *, device: str | None = None,
                 reserve: int | str | None = None) -> OffloadPlan:
    """Decide a strategy per component so that each stage's predicted peak fits ``budget``.

    Keeps the most bytes resident that still leave every other component room for its stage
    (fewest transfers); a component that cannot fit whole is streamed in block groups sized so
    two groups (current + prefetched) fit. Raises ``ValueError`` naming the smallest workable
    budget when even single-block streaming does not fit. On ``device="cpu"`` (no accelerator)
    everything is ``resident``: there is nothing to offload to.
    """
    budget_bytes = parse_bytes(budget)
    device = device or _default_device()
    if reserve is None:
        reserve_bytes = DEFAULT_RESERVE_BYTES + int(DEFAULT_RESERVE_FRACTION * budget_bytes)
    else:
        reserve_bytes = parse_bytes(reserve) if not (isinstance(reserve, int) and reserve == 0) else 0
    excluded = set(getattr(pipe, "_exclude_from_cpu_offload", []) or [])
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
    plan = OffloadPlan(device, budget_bytes, reserve_bytes, comps)
    if device == "cpu":
        for c in comps:
            c.stage_peak_bytes = plan.resident_bytes + reserve_bytes
        return plan

    available = budget_bytes - reserve_bytes

    def min_need(c: ComponentPlan) -> int:
        return c.leftover_bytes + 2 * c.block_bytes if c.blocks else c.bytes

    smallest = reserve_bytes + sum(c.bytes for c in comps if c.name in excluded) + max(
        (min_need(c) for c in comps if c.name not in excluded), default=0)
    if available <= 0 or smallest > budget_bytes:
        raise ValueError(f"budget {format_bytes(budget_bytes)} is too small for this pipeline even "
                         f"with block streaming; the smallest budget that would work is "
                         f"{format_bytes(smallest)} (reserve {format_bytes(reserve_bytes)} "
                         f"included)")

    # Block streaming costs transfers at every denoising step, model offload one per render, so
    # first: only what cannot fit whole even alone is streamed; then keep resident the largest
    # components that leave every other one room to run whole (or, if streamed, in groups).
    excluded_bytes = sum(c.bytes for c in comps if c.name in excluded)
    must_stream = {c.name for c in comps
                   if c.name not in excluded and excluded_bytes + c.bytes > available}

    def need(x: ComponentPlan) -> int:
        return min_need(x) if x.name in must_stream else x.bytes

    resident = set(excluded)
    for c in sorted((c for c in comps if c.name not in excluded | must_stream),
                    key=lambda c: -c.bytes):
        trial = resident | {c.name}
        used = sum(x.bytes for x in comps if x.name in trial)
        if used + max((need(x) for x in comps if x.name not in trial), default=0) <= available:
            resident = trial
    used = sum(c.bytes for c in comps if c.name in resident)
    for c in comps:
        if c.name in resident:
            c.strategy = "resident"
        elif used + c.bytes <= available:
            c.strategy = "model"
        else:
            c.strategy = "blocks"
            room = available - used - c.leftover_bytes
            c.blocks_per_group = max(1, min(c.blocks, room // (2 * max(c.block_bytes, 1))))
        c.stage_peak_bytes = used + (c.stage_need if c.strategy != "resident" else 0) + reserve_bytes
    # Prefetch: while a model component runs, copy the next one in on a side stream, if both fit
    # beside the resident set. Its stage peak then includes the incoming component.
    for i, c in enumerate(comps):
        later = [x for x in comps[i + 1:] if x.strategy != "resident"]
        nxt = later[0] if later else None
        if c.strategy == "model" and nxt is not None and nxt.strategy == "model" \
                and used + c.bytes + nxt.bytes <= available:
            c.prefetch = nxt.name
            c.stage_peak_bytes += nxt.bytes
    return plan
