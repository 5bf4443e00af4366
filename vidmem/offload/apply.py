"""Installing an :class:`~vidmem.offload.plan.OffloadPlan` on a pipeline.

* ``resident`` components move to the device once.
* ``model`` components get an accelerate ``ModelHook``: before a component's forward it is moved
  in and the previous ``model`` component is moved out, so only the resident set plus the running
  stage occupy the device. Their weights live in pinned host memory (up to a cap) for the whole
  render: moving in is a non-blocking copy, moving out is dropping the device copy (weights do not
  change, so nothing is copied back). Where the plan says so (``ComponentPlan.prefetch``), the next
  component is copied in on a side CUDA stream while the current one computes, and the main stream
  waits for that copy only when the next stage starts. Using accelerate's hook type (with
  ``execution_device``) keeps diffusers' ``_execution_device`` and ``vae.decode``'s
  ``apply_forward_hook`` working unchanged.
* ``blocks`` components use diffusers' group offloading (block level, CUDA-stream prefetch of the
  next group) rather than a rewrite of it, installed on the module that holds the block list
  (:func:`block_list_parent`: a T5 or CLIP text encoder's layers sit one level down, and diffusers
  groups only the module's own ``ModuleList`` children). Whatever lies outside that module moves
  in and out with the component's stage, like a ``model`` component.
* components the plan stores in float8 (``ComponentPlan.fp8``, only with ``allow_fp8``) get
  diffusers' layerwise casting first (:func:`vidmem.offload.fp8.apply_fp8_storage`), so their host
  copies, transfers and device copies are float8; this stays after :meth:`AppliedPlan.remove`
  (the precision is gone; reload the component to undo it).
* :meth:`AppliedPlan.prepare_for_decode` moves everything but the VAE out before the decode
  (diffusers leaves the last model of its chain resident, diffusers #11376).

Every move is recorded in ``AppliedPlan.events`` as ``("onload" | "offload" | "prefetch", name)``
(a prefetched component's stage start records ``("onload", name)`` too; installing group
offloading records ``"stream-blocks"``, float8 storage ``"fp8"``), so the
sequencing can be tested on a machine without CUDA (``simulate=True`` runs the same logic with
the host as both devices).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..errors import InvalidOptions
from .fp8 import apply_fp8_storage
from .introspect import find_block_list, module_tensors, offload_sequence

if TYPE_CHECKING:  # the plan is data this module reads; it imports this one to apply itself
    from .plan import OffloadPlan

log = logging.getLogger("vidmem")
_warned_no_device = False

#: At most this fraction of host RAM is pinned for fast transfers (the rest stays pageable).
MAX_PINNED_FRACTION = 0.5


def _host_ram_bytes() -> int:
    try:
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def block_list_parent(module: torch.nn.Module) -> torch.nn.Module:
    """The module whose direct child is ``module``'s block list (:func:`find_block_list`):
    where block-level group offloading must be installed, since diffusers' version groups only
    the ``ModuleList`` children of the module it is given and loads every other child whole
    (installed on umt5's ``UMT5EncoderModel``, whose blocks sit in ``encoder.block``, it would
    load all 11 GB at once)."""
    found = find_block_list(module)
    if found is None or "." not in found[0]:
        return module
    return module.get_submodule(found[0].rpartition(".")[0])


class HostCopy:
    """A component's weights kept on the host (pinned when asked), with device copies on demand.

    Why not ``module.to(device)`` / ``module.to("cpu")``: moving out would copy the weights back
    into fresh pageable memory every stage; here the host copy is made once, moving out only
    swaps each tensor's ``.data`` back to it, and moving in copies from pinned memory
    asynchronously (optionally on a side stream)."""

    def __init__(self, module: torch.nn.Module, pin: bool,
                 exclude: torch.nn.Module | None = None):
        """``exclude``: a submodule whose tensors are not part of this copy (they are moved by
        someone else: block streaming)."""
        seen: set[int] = {id(t) for t in module_tensors(exclude)} if exclude is not None else set()
        self.tensors: list[torch.Tensor] = []
        for t in module_tensors(module):
            if id(t) not in seen:
                seen.add(id(t))
                self.tensors.append(t)
        self.host = []
        for t in self.tensors:
            data = t.data.to("cpu")
            host = data.pin_memory() if pin else data
            self.host.append(host)
            # swap each tensor as soon as its copy exists: the pageable original is freed one
            # tensor at a time, so pinning a component never holds two copies of all of it
            # (an H200 run of a 14 GB pipeline with model offload peaked at 27.5 GB of host RAM)
            t.data = host

    def to_device(self, device: torch.device, stream: Any = None) -> None:
        import contextlib

        ctx = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
        with ctx:
            for t, h in zip(self.tensors, self.host):
                t.data = h.to(device, non_blocking=device.type == "cuda")

    def used_by_current_stream(self) -> None:
        """Tell the caching allocator the prefetched tensors are now used on the main stream, so
        their memory is not reused by the side stream while kernels still read it."""
        stream = torch.cuda.current_stream()
        for t in self.tensors:
            if t.data.is_cuda:
                t.data.record_stream(stream)

    def to_host(self) -> None:
        for t, h in zip(self.tensors, self.host):
            t.data = h


@dataclass
class AppliedPlan:
    """Handle of an installed plan: its events, the decode preparation, and removal."""

    plan: OffloadPlan
    device: torch.device
    active: bool
    modules: dict[str, torch.nn.Module] = field(default_factory=dict)
    events: list[tuple[str, str]] = field(default_factory=list)
    on_event: Callable[[str, str], None] | None = None
    _hooked: list[torch.nn.Module] = field(default_factory=list)
    _current: str | None = None
    _pinned_bytes: int = 0
    _host: dict[str, HostCopy] = field(default_factory=dict)
    #: in-flight prefetch: component name -> the CUDA event its copy completes (None: simulated).
    _prefetched: dict[str, Any] = field(default_factory=dict)
    _side_stream: Any = None

    def _record(self, kind: str, name: str) -> None:
        self.events.append((kind, name))
        if self.on_event is not None:
            self.on_event(kind, name)

    def _move(self, name: str, kind: str) -> None:
        """``kind`` "onload": to the plan's device; "offload": back to the host."""
        host = self._host.get(name)
        if host is not None:
            if kind == "onload":
                host.to_device(self.device)
            else:
                host.to_host()
        else:
            module = self.modules[name]
            device = self.device if kind == "onload" else torch.device("cpu")
            module.to(device, non_blocking=device.type == "cuda")
        self._record(kind, name)

    def _prefetch(self, name: str) -> None:
        """Start copying ``name`` in on the side stream (or, simulated, just record it)."""
        host = self._host[name]
        if self.device.type == "cuda":
            if self._side_stream is None:
                self._side_stream = torch.cuda.Stream(self.device)
            # the side stream must not start before the main stream's pending work that freed
            # the memory it is about to reuse
            self._side_stream.wait_stream(torch.cuda.current_stream(self.device))
            host.to_device(self.device, self._side_stream)
            event = torch.cuda.Event()
            event.record(self._side_stream)
            self._prefetched[name] = event
        else:
            host.to_device(self.device)
            self._prefetched[name] = None
        self._record("prefetch", name)

    def activate(self, name: str) -> None:
        """Make ``name`` the running ``model`` component: the previous one out, it in, and the
        next one (if the plan says so) prefetched."""
        if not self.active or self._current == name:
            return
        # ``model`` components, and the parts of ``blocks`` components outside their streamed
        # block lists, have host copies: the previous stage's leaves, this one's comes in
        if self._current is not None and self._current in self._host:
            self._move(self._current, "offload")
        if name in self._prefetched:
            event = self._prefetched.pop(name)
            if event is not None:
                torch.cuda.current_stream(self.device).wait_event(event)
                self._host[name].used_by_current_stream()
            self._record("onload", name)
        elif name in self._host:
            self._move(name, "onload")
        self._current = name
        nxt = self.plan.component(name).prefetch
        if nxt is not None and nxt in self._host and nxt not in self._prefetched:
            self._prefetch(nxt)

    def prepare_for_decode(self, vae_name: str = "vae") -> None:
        """Everything the decode does not need leaves the device; the VAE comes in."""
        if not self.active:
            return
        for name in list(self._prefetched):
            if name != vae_name:  # a prefetch the decode will not use
                self._prefetched.pop(name)
                self._host[name].to_host()
                self._record("offload", name)
        if self._current is not None and self._current != vae_name:
            if self._current in self._host:
                self._move(self._current, "offload")
            self._current = None
        if vae_name in self.modules and self.plan.component(vae_name).strategy == "model":
            self.activate(vae_name)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def remove(self) -> None:
        """Remove the hooks and move every component back to the host."""
        from accelerate.hooks import remove_hook_from_module

        for module in self._hooked:
            remove_hook_from_module(module)
        self._hooked.clear()
        if self.active:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self._prefetched.clear()
            for name, module in self.modules.items():
                if name in self._host:
                    self._host[name].to_host()
                else:
                    module.to("cpu")
        self._current = None


def _make_hook(applied: AppliedPlan, name: str):
    from accelerate.hooks import ModelHook

    class StageHook(ModelHook):
        """Moves its component in before its forward (accelerate hook type, for diffusers)."""

        def __init__(self):
            super().__init__()
            self.execution_device = applied.device

        def pre_forward(self, module, *args, **kwargs):
            applied.activate(name)
            return args, kwargs

    return StageHook()


def apply_plan(pipe: Any, plan: OffloadPlan, *, simulate: bool = False,
               reset_device_map: bool = False, pin_memory: bool = True,
               on_event: Callable[[str, str], None] | None = None) -> AppliedPlan:
    """Install ``plan`` on ``pipe`` and return the handle (see the module docstring).

    ``simulate=True`` installs the sequencing with the host as the device (for tests and dry
    runs). Without an accelerator (or for a ``cpu`` plan) nothing is installed and a warning is
    given once; the pipeline runs as it is.
    """
    global _warned_no_device
    if getattr(pipe, "hf_device_map", None):
        if not reset_device_map:
            raise InvalidOptions("this pipeline was loaded with a device_map (pipe.hf_device_map is "
                             "set); call pipe.reset_device_map() first, or pass "
                             "reset_device_map=True")
        pipe.reset_device_map()
    device = torch.device("cpu" if simulate else plan.device)
    usable = simulate or (plan.device != "cpu" and device.type == "cuda"
                          and torch.cuda.is_available())
    modules = dict(offload_sequence(pipe))
    applied = AppliedPlan(plan, device, usable, modules, on_event=on_event)
    if not usable:
        if not _warned_no_device:
            _warned_no_device = True
            warnings.warn("no accelerator here: the offload plan is not installed; "
                          "the pipeline runs on the CPU as it is", RuntimeWarning, stacklevel=2)
        return applied

    from accelerate.hooks import add_hook_to_module

    if any(getattr(m, "_hf_hook", None) is not None for m in modules.values()):
        log.warning("removing the offload hooks already installed on this pipeline")
        pipe.remove_all_hooks()
    pin_cap = int(MAX_PINNED_FRACTION * _host_ram_bytes())
    for c in plan.components:
        module = modules[c.name]
        if c.fp8:
            apply_fp8_storage(module)
            applied._record("fp8", c.name)
        if c.strategy == "resident":
            applied._move(c.name, "onload")
        elif c.strategy == "model":
            size = c.device_bytes
            pin = pin_memory and device.type == "cuda" and applied._pinned_bytes + size <= pin_cap
            applied._host[c.name] = HostCopy(module, pin)
            applied._pinned_bytes += size if pin else 0
            add_hook_to_module(module, _make_hook(applied, c.name))
            applied._hooked.append(module)
        else:  # blocks: diffusers' group offloading, with stream prefetch on CUDA
            parent = block_list_parent(module)
            if device.type == "cuda":
                from diffusers.hooks import apply_group_offloading

                apply_group_offloading(parent, onload_device=device, offload_device="cpu",
                                       offload_type="block_level",
                                       num_blocks_per_group=c.blocks_per_group, use_stream=True)
            applied._record("stream-blocks", c.name)
            if parent is not module:  # what lies outside the block list's parent: a stage
                outside = HostCopy(module, pin=False, exclude=parent)
                if outside.tensors:
                    applied._host[c.name] = outside
                    add_hook_to_module(module, _make_hook(applied, c.name))
                    applied._hooked.append(module)
    return applied
