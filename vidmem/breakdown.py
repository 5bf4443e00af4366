"""Where a decode's peak host memory goes: process baseline, live tensors, kernel workspaces and
allocator overhead.

Why: peak RSS alone does not say what to cut. A decode's peak is the sum of four different
things, each cut by a different lever:

``baseline``
    ``VmRSS`` when the decode starts: the interpreter, torch/diffusers/PyAV, the model weights, the
    latents. Nothing the decode does changes it.
``live tensors``
    the most bytes that torch's CPU allocator (c10) held *between* top-level operators: the
    storages of tensors that exist as Python-visible values (activations, causal caches, the
    decoded chunk). Cut by smaller chunks or tiles.
``kernel workspaces``
    at the moment c10's total was highest, the part of it that one operator allocated and freed
    again before it returned (``slow_conv3d``'s im2col column buffer is the big one on CPU; the
    temporaries of composite operators too). Cut by convolution paths with small workspaces
    (:mod:`vidmem.decode.conv_workspace`).
``allocator overhead (and other native memory)``
    ``peak RSS - baseline - (live tensors + kernel workspaces)``: what the process held at its
    peak beyond what torch had allocated: glibc keeping freed memory (fragmented heaps, per-thread
    arenas, a raised mmap threshold), and native buffers that bypass c10 (the chunks waiting in
    the writer's queue, which are the writer's own copies; the H.264 encoder's frames and
    lookahead, BLAS packing buffers). Cut by malloc tuning
    (:mod:`vidmem.allocator`).

How the two torch terms are measured: ``torch.profiler`` with ``profile_memory=True`` reports
every c10 CPU allocation and free with a timestamp, and every operator call with its interval.
A sweep over those events in time order keeps the running total of c10 bytes; for each top-level
operator (one that no other operator encloses) the rise of the total during the operator above
both its level before and after the operator is that operator's transient workspace. The peak
running total, split at the operator where it happened into its lasting part and its transient
part, gives ``live tensors + kernel workspaces = c10 peak``; the largest ``live`` level between
operators is reported too (``live_tensor_peak``), and the operator with the largest workspace of
the whole decode is named.

The peak RSS is the decode's own: ``VmHWM`` is reset at the start (``/proc/self/clear_refs``,
Linux >= 4.0) and read at the end; the process's earlier high-water mark is kept in
``process_peak_rss``. Where /proc is not writable the reset is skipped and the peak is the
process's.

Only the decoding thread's allocations and frees are seen (torch's profiler records memory
events on the threads it profiles), so everything c10 allocates there must also be freed there:
:class:`vidmem.VideoWriter` queues its own copy of each chunk for that reason.

Cost: the profiler records every operator (a few microseconds each) and every allocation; it is
opt-in (``decode_to_video(..., memory_breakdown=True)``, ``vidmem render --memory-breakdown``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

from .memory import current_rss_bytes, format_bytes, peak_rss_bytes


@dataclass
class MemoryBreakdown:
    """A decode's peak host memory, split into the four terms of the module docstring (bytes)."""

    baseline_rss: int
    peak_rss: int
    live_tensors: int
    kernel_workspaces: int
    allocator_overhead: int
    #: the largest level of c10 bytes held between top-level operators over the whole decode.
    live_tensor_peak: int
    #: the operator with the largest transient workspace, and that workspace.
    largest_workspace_op: str
    largest_workspace: int
    #: the process's VmHWM before the decode (its peak over its whole life is the larger one).
    process_peak_rss: int

    @property
    def over_baseline(self) -> int:
        return self.peak_rss - self.baseline_rss

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "over_baseline": self.over_baseline}

    def __str__(self) -> str:
        return (f"decode peak RSS {format_bytes(self.peak_rss)} = baseline "
                f"{format_bytes(self.baseline_rss)} + live tensors "
                f"{format_bytes(self.live_tensors)} + kernel workspaces "
                f"{format_bytes(self.kernel_workspaces)} + allocator overhead "
                f"{format_bytes(self.allocator_overhead)} (largest workspace: "
                f"{self.largest_workspace_op} {format_bytes(self.largest_workspace)})")


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS; ``False`` where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class _C10Sweep:
    """Result of sweeping the profiler's events (bytes relative to the start of profiling)."""

    peak: int = 0
    peak_transient: int = 0
    live_peak: int = 0
    largest_op: str = ""
    largest: int = 0


def sweep_c10_events(ops: Iterable[tuple[int, int, str]],
                     memory: Iterable[tuple[int, int]]) -> _C10Sweep:
    """Split c10's running total into lasting and transient parts.

    ``ops``: ``(start_ns, end_ns, name)`` of the *top-level* operators of the decoding thread;
    ``memory``: ``(timestamp_ns, signed_bytes)`` of every c10 allocation (+) and free (-).
    """
    points: list[tuple[int, int, int, Any]] = []
    for start, end, name in ops:
        points.append((start, 0, 0, name))  # order at equal times: begin, memory, end
        points.append((end, 2, 0, name))
    for ts, nbytes in memory:
        points.append((ts, 1, nbytes, None))
    points.sort(key=lambda p: (p[0], p[1]))
    out = _C10Sweep()
    total = 0
    op_base = op_max = None
    for _, kind, nbytes, name in points:
        if kind == 0:
            op_base = op_max = total
        elif kind == 1:
            total += nbytes
            if op_max is not None:
                op_max = max(op_max, total)
            else:  # between operators: everything allocated is held by a live tensor
                out.live_peak = max(out.live_peak, total)
                out.peak = max(out.peak, total)
                if out.peak == total:
                    out.peak_transient = 0
        else:
            if op_max is None:
                continue
            lasting = max(op_base, total)
            transient = op_max - lasting
            out.live_peak = max(out.live_peak, lasting)
            if op_max > out.peak:
                out.peak, out.peak_transient = op_max, transient
            if transient > out.largest:
                out.largest, out.largest_op = transient, name
            op_base = op_max = None
    return out


class MemoryProbe:
    """Measure a :class:`MemoryBreakdown` of the code run inside ``with MemoryProbe() as probe:``
    (read ``probe.result`` afterwards). Run it on the thread that does the decoding."""

    def __init__(self) -> None:
        self.result: MemoryBreakdown | None = None

    def __enter__(self) -> MemoryProbe:
        import threading

        from torch.profiler import ProfilerActivity, profile

        self._thread_ident = threading.get_ident()
        self._process_peak = peak_rss_bytes()
        self._baseline = current_rss_bytes()
        reset_peak_rss()
        self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._prof.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._prof.__exit__(*exc)
        peak = peak_rss_bytes()
        if exc[0] is not None:
            return
        sweep = self._sweep()
        c10_peak = sweep.peak
        self.result = MemoryBreakdown(
            baseline_rss=self._baseline, peak_rss=peak,
            live_tensors=c10_peak - sweep.peak_transient,
            kernel_workspaces=sweep.peak_transient,
            allocator_overhead=peak - self._baseline - c10_peak,
            live_tensor_peak=sweep.live_peak, largest_workspace_op=sweep.largest_op,
            largest_workspace=sweep.largest, process_peak_rss=max(self._process_peak, peak))

    def _sweep(self) -> _C10Sweep:
        from torch.autograd import DeviceType

        events = self._prof.profiler.kineto_results.events()
        memory, ops = [], []
        for e in events:
            if e.name() == "[memory]":
                if e.device_type() == DeviceType.CPU:
                    memory.append((e.start_ns(), e.nbytes()))
            elif e.device_type() == DeviceType.CPU:
                ops.append((e.start_ns(), e.end_ns(), e.start_thread_id(), e.name()))
        # Profiler thread ids are its own small integers: the decoding thread is the one that
        # ran the most operators (the writer thread runs none).
        counts: dict[int, int] = {}
        for _, _, tid, _ in ops:
            counts[tid] = counts.get(tid, 0) + 1
        main = max(counts, key=counts.get) if counts else None
        top: list[tuple[int, int, str]] = []
        open_until = -1
        for start, end, tid, name in sorted((o for o in ops if o[2] == main),
                                            key=lambda o: (o[0], -o[1])):
            if start >= open_until:  # not inside the previous top-level operator
                top.append((start, end, name))
                open_until = end
        return sweep_c10_events(top, memory)
