"""Each stage's peak measured in a real run, in the same windows the simulation uses.

Why: the simulator (:mod:`vidmem.offload.simulate`, :mod:`vidmem.offload.stages`) is a model;
this module is the independent measurement it is checked against.

* CPU: the PyTorch profiler's allocation events (``profile_memory=True``: every allocation and
  free of the CPU allocator, with kernel-internal buffers, in time order). A stage's peak is the
  highest running sum of those events within its window, relative to the start of the run (the
  weights, allocated before, are not in it). Window boundaries are ``record_function`` markers
  emitted by forward hooks on the components and by the pipeline's step-end callback, so they
  share the profiler's clock.
* CUDA: ``torch.cuda.max_memory_allocated`` reset at each window start and read at its end, minus
  the bytes allocated before the run (the weights and anything else resident).

The windows are those of :class:`vidmem.offload.stages.StageTimeline`: a text encoder from its
first call to its last, a denoiser from its first call in a step to the end of that step; the
decode of the streaming decoder (:func:`measure_decode`) over its first chunks.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from .stages import StageTimeline, Workload, call_arguments_for

_MARK = "vidmem-stage"


def _mark(kind: str, name: str = "") -> None:
    from torch.autograd.profiler import record_function

    with record_function(f"{_MARK}|{kind}|{name}"):
        pass


def profiled_timeline(fn: Callable[[], Any]) -> StageTimeline:
    """Run ``fn`` under the profiler (CPU allocations) and return its stage timeline: allocation
    levels interleaved with the window markers ``fn`` emits (:func:`_mark`)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = prof.profiler.kineto_results.events()
    ordered = []
    for e in events:
        name = e.name()
        if name == "[memory]":
            ordered.append((e.start_ns(), 1, "mem", e.nbytes()))
        elif name.startswith(_MARK + "|"):
            _, kind, comp = name.split("|", 2)
            ordered.append((e.start_ns(), 0, kind, comp))
    ordered.sort(key=lambda x: (x[0], x[1]))
    timeline = StageTimeline()
    level = 0
    for _, _, kind, value in ordered:
        if kind == "mem":
            level += value
            timeline.sample(level)
        elif kind == "begin":
            timeline.begin(value)
        elif kind == "end":
            timeline.end(value)
        elif kind == "step":
            timeline.step_end()
    return timeline


@contextmanager
def marked_components(pipe: Any, names: list[str]) -> Iterator[None]:
    """Forward hooks (and wrapped ``encode``) that mark each component call's window."""
    handles = []
    patched = []
    for name in names:
        module = getattr(pipe, name, None)
        if not isinstance(module, torch.nn.Module):
            continue
        handles.append(module.register_forward_pre_hook(
            lambda m, a, _n=name: _mark("begin", _n)))
        handles.append(module.register_forward_hook(
            lambda m, a, o, _n=name: _mark("end", _n), always_call=True))
        if hasattr(module, "encode") and "encode" not in module.__dict__:
            original = module.encode

            def encode(*a: Any, _n: str = name, _f: Callable = original, **k: Any) -> Any:
                _mark("begin", _n)
                try:
                    return _f(*a, **k)
                finally:
                    _mark("end", _n)

            module.encode = encode
            patched.append(module)
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for module in patched:
            del module.encode


def measure_pipeline_cpu(pipe: Any, workload: Workload) -> dict[str, int]:
    """Each component's stage peak (bytes above the weights) in a real CPU run of ``pipe``'s
    one-step, latents-out call of ``workload`` (the call :mod:`vidmem.offload.stages`
    simulates), from the profiler's allocation events."""
    names = [n for n, m in pipe.components.items() if isinstance(m, torch.nn.Module)]
    call = call_arguments_for(pipe, workload, lambda: _mark("step"))

    def run() -> None:
        with torch.no_grad(), marked_components(pipe, names):
            pipe(**call)

    return profiled_timeline(run).peaks()


def measure_decode_cpu(vae: torch.nn.Module, latents: torch.Tensor, plan: Any,
                       windows: int = 2) -> int:
    """The peak of a real CPU decode of ``plan``'s first ``windows`` chunks
    (:func:`vidmem.decode.stream.device_chunks`), above the weights, plus the latents: what
    :func:`vidmem.offload.stages.simulate_decode` predicts."""
    from ..decode.families import adapter_for
    from ..decode.stream import device_chunks

    kwargs = {"temb": torch.tensor([0.05])} if getattr(
        getattr(vae, "decoder", None), "time_embedder", None) is not None else {}
    adapter = adapter_for(vae, kwargs)
    holder: dict[str, Any] = {}

    def run() -> None:
        z = torch.randn(tuple(adapter.to_canonical(latents).shape))
        holder["latent_bytes"] = z.numel() * z.element_size()
        with torch.no_grad():
            for _frames, chunk in device_chunks(adapter, z, plan, "uint8",
                                                windows=plan.windows[:windows]):
                del chunk

    timeline = StageTimeline()
    timeline.begin("vae")
    profiled = profiled_timeline(run)
    timeline.events += profiled.events
    timeline.end("vae")
    return timeline.peaks()["vae"]


def cuda_stage_peaks(pipe: Any, workload: Workload, device: str = "cuda",
                     warmup: bool = True) -> dict[str, int]:
    """Each component's stage peak on CUDA: ``max_memory_allocated`` over its window minus what
    was allocated before the run (weights). The peak counter is reset when a component's first
    call of a window starts and read at its calls' ends and at the step's end, so the window is
    the simulation's. ``pipe`` must already be on ``device``.

    ``warmup``: run the call once first, so that cuBLAS' workspaces (allocated once per handle
    and kept; the planner's constant, not the simulation, accounts for them) exist before the
    measured run and are not charged to whichever stage happens to multiply first."""
    names = [n for n, m in pipe.components.items() if isinstance(m, torch.nn.Module)]
    if warmup:
        with torch.no_grad():
            pipe(**call_arguments_for(pipe, workload, lambda: None))
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    peaks: dict[str, int] = {}
    state: dict[str, Any] = {"open": None, "value": 0}

    def read() -> int:
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base

    def begin(name: str) -> None:
        if state["open"] == name:
            return
        commit()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        state["open"], state["value"] = name, 0

    def end(name: str) -> None:
        if state["open"] == name:
            state["value"] = read()

    def step_end() -> None:
        if state["open"] is not None:
            state["value"] = read()
            commit()

    def commit() -> None:
        name = state["open"]
        if name is not None:
            peaks[name] = max(peaks.get(name, 0), state["value"])
            state["open"] = None

    handles = []
    for name in names:
        module = getattr(pipe, name)
        handles.append(module.register_forward_pre_hook(lambda m, a, _n=name: begin(_n)))
        handles.append(module.register_forward_hook(lambda m, a, o, _n=name: end(_n),
                                                    always_call=True))
    call = call_arguments_for(pipe, workload, step_end)
    try:
        with torch.no_grad():
            pipe(**call)
        commit()
    finally:
        for h in handles:
            h.remove()
    return peaks


def cuda_decode_peak(vae: torch.nn.Module, latents: torch.Tensor, plan: Any,
                     windows: int = 2, warmup: bool = True) -> int:
    """``max_memory_allocated`` of the first ``windows`` chunks of a CUDA decode, above the
    weights, latents included (``vae`` on CUDA); ``warmup`` as in :func:`cuda_stage_peaks`."""
    if warmup:
        cuda_decode_peak(vae, latents, plan, windows=1, warmup=False)
    from ..decode.families import adapter_for
    from ..decode.stream import device_chunks

    kwargs = {"temb": torch.tensor([0.05])} if getattr(
        getattr(vae, "decoder", None), "time_embedder", None) is not None else {}
    adapter = adapter_for(vae, kwargs)
    device = next(vae.parameters()).device
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    z = torch.randn(tuple(adapter.to_canonical(latents).shape), device=device)
    with torch.no_grad():
        for _frames, chunk in device_chunks(adapter, z, plan, "uint8",
                                            windows=plan.windows[:windows]):
            del chunk
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base
