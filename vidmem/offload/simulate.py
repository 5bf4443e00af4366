"""Device memory of a component's forward, simulated at the real shape with no weights and no
compute.

Why: an offload plan is only as good as its prediction of each stage's peak. Weights are easy
(their sizes are in the config); activations are not: at Wan 2.1 14B's 1280x720x81 shape one FFN
intermediate is ~2 GB and the float32 temporaries of norms and rotary embeddings double some
tensors, while at the tiny pipeline's shape the activations are a few hundred KB. A constant
reserve is wrong at both ends. So the forward is *run*, but on fake tensors: every op produces a
tensor with the real shape, dtype, strides and device and no storage behind it, and PyTorch's own
``MemTracker`` (``torch.distributed._tools.mem_tracker``) counts the bytes of the storages that
are alive, op by op. The peak of that count is the activation peak. A whole Wan 2.1 14B
transformer pass at 720p/81 frames simulates in about two seconds on a shared 2-core CPU.

Why MemTracker and not a tracker of our own: it already keys live memory by *storage* (views and
in-place ops cost nothing, as on a device) and attaches a finalizer to each fake storage, so the
bytes leave the count when the last reference dies (a probe of a naive weakref tracker over meta
tensors counted 26 GiB still alive after a forward; here a test checks that the count returns to
the outputs' size). Its per-module statistics are switched off (:func:`live_bytes_tracker`), and
each component call gets its own tracker (:func:`simulate_call`).

Accounting rules (bytes of live tensor storage on the target device; the kernel rules are in
:mod:`vidmem.offload.kernel_rules`):

1. An op's outputs are allocated at their real size when the op returns and freed when their last
   Python reference dies: that is when the real allocator frees them too (reference counting).
   Views share their base's storage; in-place ops allocate nothing.
2. Weights, buffers and the call's inputs exist before the call and are not counted here; the
   planner adds the weights, the pipeline simulation (:mod:`vidmem.offload.stages`) the inputs.
   ``peak_bytes`` is the highest count above that start, ``end_bytes`` the count when the call
   returns: exactly the bytes of the outputs still referenced (tested), which proves that every
   temporary was freed.
3. Attention, convolutions and normalizations add their kernels' internal buffers
   (:mod:`vidmem.offload.kernel_rules`): attention as the fused kernels use it, an output and a
   log-sum-exp row, never an ``Lq x Lk`` matrix.
4. float32 upcasts (norms, rotary embeddings, timestep embeddings) are ordinary ops with float32
   outputs, so they are counted at float32 size with no special rule.
5. On the CUDA target, each allocation is rounded up to a multiple of 512 bytes (the caching
   allocator's block size). The fake tensors themselves are on a fake CPU device for both targets
   (builds without CUDA cannot run every op on fake CUDA tensors); the model code of the
   supported families does not branch on the device type.
6. Repeated blocks: a transformer's blocks run one after another, each freeing its temporaries
   before the next starts (what a block hands to the next, such as a position bias, is freed by
   the one after), so the forward's peak does not depend on how many blocks there are. With
   ``one_block=True`` every list of three or more identical blocks is cut to its first two (three
   where block 0 differs from the rest, as T5's first layer does) before simulating; tests prove
   the peak and the outputs equal to the full model's for every family's components at five
   layers and for real Wan 2.1 1.3B shapes (30 blocks). The weights are counted from the full
   model, never from the simulated one.

Constants the planner adds to a stage (not simulated, documented here so the numbers have one
source):

* :data:`CUDA_CONTEXT_BYTES`: the CUDA context (kernel images, cuBLAS/cuDNN handles). It lives
  outside PyTorch's allocator, so ``torch.cuda.max_memory_allocated`` does not show it, but it
  takes device memory from the same budget. 512 MiB: an estimate, not a measurement (no GPU was
  available when it was set): a CUDA 12 context with lazy module loading takes a few hundred MiB
  depending on the GPU and the libraries loaded; ``benchmarks/bench_plan.py --device cuda``
  reports what a GPU really has, to calibrate it.
* :data:`KERNEL_WORKSPACE_BYTES`: cuBLAS/cuBLASLt workspaces (allocated once per handle through
  the caching allocator and kept; tens of MiB on recent GPUs, set by ``CUBLAS_WORKSPACE_CONFIG``)
  and cuDNN convolution workspaces (allocated per call, bounded by what is free). 128 MiB, also an
  estimate to calibrate on a GPU.
"""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from ..errors import InvalidOptions
from .kernel_rules import AttentionRule, KernelRules, Target

CUDA_CONTEXT_BYTES = 512 << 20
KERNEL_WORKSPACE_BYTES = 128 << 20


@dataclass(frozen=True)
class SimResult:
    """One simulated call: its activation peak and what it left alive (its outputs)."""

    peak_bytes: int
    end_bytes: int
    seconds: float
    output: Any = None


def live_bytes_tracker(round_to: int = 1) -> Any:
    """PyTorch's ``MemTracker`` with its storage accounting, counting activations only.

    What is kept: MemTracker's per-storage bookkeeping (a storage is counted once, from the op
    that creates it until its finalizer runs) and its categories: tensors registered with
    ``track_external`` (weights, inputs) are "Other", what ops create is "Activation".
    :meth:`LiveBytesTracker.activation_bytes` and its peak count activations only, so nothing that
    existed before needs subtracting.

    What is switched off, and why: for every op MemTracker walks all modules seen so far and
    deep-copies a snapshot per module whose local peak rose, and each module call stores another
    snapshot; on a VAE decode (thousands of module calls) that was 8 of 22 seconds of a
    simulation whose answer never reads it. It also installs gradient hooks on parameters
    (nothing here runs backward).

    ``round_to``: each storage is counted rounded up to a multiple of it (512 for the CUDA caching
    allocator's blocks; MemTracker does this itself only for tensors on a CUDA device, and the
    fake tensors here are on the CPU, see :class:`Simulation`)."""
    from torch.distributed._tools.common_utils import get_untyped_storages
    from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType, _UpdateType

    class LiveBytesTracker(MemTracker):
        peak_activation = 0

        def activation_bytes(self) -> int:
            return sum(int(snap.get(_MemRefType.ACT, 0)) for snap in self._curr_mem_snap.values())

        def track_untracked(self, tensors: list[torch.Tensor]) -> None:
            """Register as external ("Other") the storages of ``tensors`` not seen yet: they were
            made outside the tracked ops (numpy arrays, tokenizer outputs, tensors from before),
            so a view of them or an in-place op on them allocates nothing."""
            new = [t for t in tensors
                   if any(st not in self._WINFO for st in get_untyped_storages(t))]
            if new:
                self.track_external(*new)

        def _track(self, reftype: Any, t: torch.Tensor) -> None:
            known = {id(st) for st in get_untyped_storages(t) if st in self._WINFO}
            super()._track(reftype, t)
            if round_to > 1:
                for st in get_untyped_storages(t):
                    if id(st) not in known and st in self._WINFO:
                        winfo = self._WINFO[st][0]
                        old = winfo.mem_consumed
                        winfo.mem_consumed = -(-old // round_to) * round_to
                        if old and winfo.mem_consumed != old:
                            self._update_snap(_UpdateType.SIZE, winfo, old_mem_consumed=old)

        def _pre_fw_hook(self, module: Any, inputs: Any) -> None:
            return None

        def _post_fw_hook(self, module: Any, inputs: Any, outputs: Any) -> None:
            return None

        def _pre_bw_hook(self, module: Any, args: Any) -> None:
            return None

        def _post_bw_hook(self, module: Any, args: Any) -> None:
            return None

        def _update_peak_stats(self, peak_state: Any) -> None:
            self.peak_activation = max(self.peak_activation, self.activation_bytes())

    return LiveBytesTracker()


class Simulation:
    """A fake-tensor world with a memory tracker: ``with Simulation("cuda") as sim: ...``.

    Tensors made with :meth:`fake` (or by ops inside the ``with``) are fake: shapes and dtypes
    only. Only what ops allocate inside the ``with`` is counted; tensors made by :meth:`fake`
    before :meth:`start` are the inputs and weights, not counted."""

    def __init__(self, target: Target = "cuda", num_threads: int | None = None):
        from torch._subclasses.fake_tensor import FakeTensorMode

        if target not in ("cuda", "cpu"):
            raise InvalidOptions(f"target must be 'cuda' or 'cpu', got {target!r}")
        self.target = target
        # Fake tensors live on a fake CPU device for both targets: PyTorch builds without CUDA
        # cannot run every op on fake CUDA tensors. What differs per device is in the kernel
        # rules (selected by ``target``) and the allocator rounding.
        self.device = torch.device("cpu")
        self.num_threads = num_threads or torch.get_num_threads()
        self.fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
        self._stack: ExitStack | None = None
        self.tracker: Any = None

    def __enter__(self) -> "Simulation":
        self._stack = ExitStack()
        self._stack.enter_context(self.fake_mode)
        self._stack.enter_context(torch.no_grad())
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._stack is not None
        self._stack.close()
        self._stack = None

    def fake(self, t: torch.Tensor) -> torch.Tensor:
        """A fake tensor like ``t`` (shape, strides, dtype) on the target device; ``t`` may be a
        real, meta or fake tensor."""
        with self.fake_mode:
            return torch.empty_strided(tuple(t.shape), tuple(t.stride()), dtype=t.dtype,
                                       device=self.device)

    @contextmanager
    def tracking(self, *existing: Any) -> Iterator["Simulation"]:
        """Count live bytes from here (MemTracker plus the kernel and attention rules).

        ``existing``: the tensors that exist before (weights, inputs; any pytree). They are
        registered with the tracker as external, so a view of them or an in-place op on them is
        not mistaken for an allocation (rule 2)."""
        from torch.utils._pytree import tree_leaves

        self.tracker = live_bytes_tracker(512 if self.target == "cuda" else 1)
        tensors = [t for t in tree_leaves(existing) if isinstance(t, torch.Tensor)]
        if tensors:
            self.tracker.track_untracked(tensors)
        with self.tracker, KernelRules(self.target, self.num_threads), \
                AttentionRule(self.target, self.num_threads):
            yield self

    def live_bytes(self) -> int:
        """Bytes allocated since :meth:`tracking` began and still alive."""
        return self.tracker.activation_bytes()

    def peak_bytes(self) -> int:
        """The highest :meth:`live_bytes` so far."""
        return self.tracker.peak_activation


def identical_blocks(blocks: torch.nn.ModuleList) -> bool:
    """Whether the blocks have the same class and the same parameter names and shapes."""
    def signature(m: torch.nn.Module) -> tuple:
        return (type(m),) + tuple((n, tuple(p.shape), p.dtype) for n, p in m.named_parameters())

    first = signature(blocks[0])
    return all(signature(b) == first for b in blocks)


def _blocks_to_keep(blocks: torch.nn.ModuleList) -> int | None:
    """How many leading blocks represent the list: 2 (a block can still hold its predecessor's
    outputs, e.g. a position bias, while it reaches its own peak), or 3 when block 0 differs from
    the rest (T5's first layer owns the relative position bias); ``None``: keep all."""
    if len(blocks) < 3:
        return None
    if identical_blocks(blocks):
        return 2
    if len(blocks) >= 4 and identical_blocks(blocks[1:]):
        return 3
    return None


@contextmanager
def one_block_per_list(module: torch.nn.Module) -> Iterator[dict[str, int]]:
    """Temporarily cut each list of repeated blocks in ``module`` to its representative prefix
    (rule 6 of the module docstring); yields ``{list path: original length}``."""
    cut: list[tuple[torch.nn.Module, str, torch.nn.ModuleList]] = []
    lengths: dict[str, int] = {}
    for path, child in list(module.named_modules()):
        if not isinstance(child, torch.nn.ModuleList) or any(
                path.startswith(p + ".") for p in lengths):
            continue
        keep = _blocks_to_keep(child)
        if keep is None or keep >= len(child):
            continue
        parent_path, _, attr = path.rpartition(".")
        parent = module.get_submodule(parent_path) if parent_path else module
        cut.append((parent, attr, child))
        lengths[path] = len(child)
        setattr(parent, attr, torch.nn.ModuleList(list(child)[:keep]))
    try:
        yield lengths
    finally:
        for parent, attr, child in reversed(cut):
            setattr(parent, attr, child)


class _Call(torch.nn.Module):
    """Holds a module so ``torch.func.functional_call`` can swap its tensors for fake ones while
    an arbitrary function (a decode loop that calls several submodules) runs."""

    def __init__(self, module: torch.nn.Module, fn: Callable[[], Any]):
        super().__init__()
        self.module = module
        self.fn = fn

    def forward(self) -> Any:
        return self.fn()


def fake_state(sim: Simulation, module: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """Fake copies of ``module``'s parameters and buffers, keyed for ``functional_call``."""
    named = list(module.named_parameters(remove_duplicate=False)) + \
        list(module.named_buffers(remove_duplicate=False))
    return {prefix + name: sim.fake(t) for name, t in named}


def to_fake(sim: Simulation, value: Any) -> Any:
    """Every tensor in ``value`` (any pytree: tuples, dicts, model outputs) made fake."""
    from torch.utils._pytree import tree_map_only

    return tree_map_only(torch.Tensor, sim.fake, value)


def simulate_call(module: torch.nn.Module, args: tuple = (), kwargs: dict | None = None, *,
                  target: Target = "cuda", num_threads: int | None = None,
                  one_block: bool = True) -> SimResult:
    """Simulate ``module(*args, **kwargs)``: the arguments may be real, meta or fake tensors (only
    their shapes, strides and dtypes are used), the module's weights are replaced by fake ones,
    and only the memory the forward allocates is counted (rule 2). ``output`` holds fake tensors
    with the real output's shapes and dtypes. With ``one_block`` the module's lists of repeated
    blocks are cut for the duration of the call and restored after it (rule 6; not thread-safe)."""
    from torch.func import functional_call

    # A call that returns every layer's hidden states keeps them all alive: its peak grows with
    # the layer count, so it is simulated whole.
    one_block = one_block and not (kwargs or {}).get("output_hidden_states")
    t0 = time.perf_counter()
    with Simulation(target, num_threads) as sim, \
            (one_block_per_list(module) if one_block else nullcontext()):
        state = fake_state(sim, module)
        fake_args, fake_kwargs = to_fake(sim, tuple(args)), to_fake(sim, dict(kwargs or {}))
        with sim.tracking(state, fake_args, fake_kwargs):
            output = functional_call(module, state, fake_args, fake_kwargs, tie_weights=False)
            end = sim.live_bytes()
        peak = sim.peak_bytes()
    return SimResult(peak, end, time.perf_counter() - t0, output)


def simulate_fn(module: torch.nn.Module, prepare: Callable[[Simulation], Any],
                fn: Callable[[Any], Any], *, target: Target = "cuda",
                num_threads: int | None = None, one_block: bool = False) -> SimResult:
    """Simulate ``fn(prepare(sim))`` while ``module``'s tensors are fake: ``prepare`` makes the
    inputs (not counted), ``fn`` is the work counted (it may call any of ``module``'s
    submodules, e.g. a decode loop)."""
    from torch.func import functional_call

    t0 = time.perf_counter()
    with Simulation(target, num_threads) as sim, \
            (one_block_per_list(module) if one_block else nullcontext()):
        state = fake_state(sim, module, prefix="module.")
        inputs = prepare(sim)
        with sim.tracking(state, inputs):
            output = functional_call(_Call(module, lambda: fn(inputs)), state, (),
                                     tie_weights=False)
            end = sim.live_bytes()
        peak = sim.peak_bytes()
    return SimResult(peak, end, time.perf_counter() - t0, output)
