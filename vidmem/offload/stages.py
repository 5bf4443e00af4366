"""Each stage of a render, simulated: the pipeline's own ``__call__`` with simulated components,
and vidmem's streaming decode on fake tensors.

Why run the pipeline itself: how a stage uses memory depends on how the pipeline calls its
components, and that differs per family: Wan encodes the prompt and the negative prompt in two
text-encoder calls and runs the transformer twice per step (conditional, then unconditional, the
first output kept alive meanwhile); CogVideoX and LTX concatenate both into one batch of two;
every pipeline prepares latents, masks and rotary tables around the calls. Rather than describe
each family by hand (and drift from diffusers), the pipeline's ``__call__`` runs for one
denoising step with ``output_type="latent"``, its components replaced by stand-ins that:

* simulate the real component's call at the shapes the pipeline passes
  (:func:`vidmem.offload.simulate.simulate_call`: fake tensors, MemTracker, one block per list of
  repeated blocks) and
* return real zero tensors of the output's shapes and dtypes, so the pipeline's own code between
  the calls (the "glue": latents, masks, guidance arithmetic, the scheduler step) runs for real.

The glue's tensors are counted by a second ``MemTracker`` over that real run; a stage's peak is the
highest of (the glue's live bytes) and (the glue's live bytes when a call starts + that call's
simulated peak) within the stage's window:

* text encoders: from their first call to their last;
* denoisers: from their first call in a step to the end of that step
  (``callback_on_step_end``), so the guidance arithmetic and the scheduler step are included;
* the VAE: vidmem's streaming decode, simulated separately (:func:`simulate_decode`): the first
  two temporal chunks (the first, and a steady-state one with the causal caches of every tile
  alive), every tile, blending, cross-fades and the on-device uint8 conversion, exactly the code
  of :func:`vidmem.decode.stream.device_chunks`; the full latents stay on the device meanwhile.
  A VAE the pipeline itself calls (image-to-video pipelines encode the conditioning frames) also
  gets that call's window.

The same windows are marked in a real run by :mod:`vidmem.offload.measure`, which is how the
simulation is checked against the PyTorch profiler on CPU and ``max_memory_allocated`` on CUDA.

Limits: a forward whose memory depends on tensor *values* cannot run on fake tensors (Mochi's
attention selects the valid prompt tokens with ``nonzero``; HunyuanVideo 1.5's text model reads
positions from the data); the planner then says so and falls back to an estimate. Tensors the
glue makes outside tensor ops (numpy images, tokenizer outputs) are host memory in a GPU run and
are not counted.

The glue runs on the CPU with real tensors: at Wan 2.1 14B's 720p/81-frame shape that is a few
latent-sized float32 tensors (~20 MB each), a fraction of a second. Prompts are one token word; a
stand-in byte-level tokenizer replaces tokenizers that are not loaded (``vidmem plan --model``
reads configs only), which changes nothing: the pipeline pads to ``max_sequence_length``.
"""

from __future__ import annotations

import copy
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..decode.options import DecodeOptions
from ..errors import UnsupportedModel
from .introspect import is_vae
from .simulate import Simulation, SimResult, simulate_call, simulate_fn, to_fake

log = logging.getLogger("vidmem")


@dataclass(frozen=True, init=False)
class Workload:
    """What will be rendered: the clip's size and the options that change memory.

    ``None`` sizes mean the pipeline's own defaults (its ``__call__`` signature). ``call_kwargs``
    are extra pipeline arguments (e.g. ``guidance_scale``, ``max_sequence_length``); ``decode``
    is the decode's :class:`~vidmem.decode.options.DecodeOptions`, the same value the render
    decodes with, so the simulated decode is the one that will run. The keyword shortcuts
    ``chunk_frames=``, ``tile_size=``, ``tile_overlap=``, ``overlap_frames=``,
    ``whole_clip_norm=`` are applied over ``decode`` (as in :func:`vidmem.decode_latents`)."""

    num_frames: int | None
    height: int | None
    width: int | None
    call_kwargs: dict[str, Any]
    decode: DecodeOptions

    def __init__(self, num_frames: int | None = None, height: int | None = None,
                 width: int | None = None, call_kwargs: dict[str, Any] | None = None,
                 decode: DecodeOptions | None = None, **decode_shortcuts: Any):
        object.__setattr__(self, "num_frames", num_frames)
        object.__setattr__(self, "height", height)
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "call_kwargs", dict(call_kwargs or {}))
        object.__setattr__(self, "decode", DecodeOptions.build(decode, **decode_shortcuts))

    @classmethod
    def for_call(cls, call_kwargs: dict[str, Any], decode: DecodeOptions | None = None,
                 **decode_shortcuts: Any) -> "Workload":
        """The workload of a pipeline call (``num_frames``, ``height``, ``width`` and every other
        argument of ``call_kwargs``) decoded with ``decode`` and the keyword shortcuts of
        :func:`vidmem.decode_latents`."""
        rest = {k: v for k, v in call_kwargs.items() if k not in ("num_frames", "height", "width")}
        return cls(call_kwargs.get("num_frames"), call_kwargs.get("height"),
                   call_kwargs.get("width"), call_kwargs=rest, decode=decode, **decode_shortcuts)

    def describe(self) -> str:
        size = (f"{self.width}x{self.height}" if self.width and self.height else "default size")
        frames = f"{self.num_frames} frames" if self.num_frames else "default frames"
        return f"{frames}, {size}"


@dataclass
class StagePeak:
    """One component's stage: the device bytes above the weights at its peak (activations, the
    pipeline's live tensors, kernel buffers), and how it was obtained."""

    name: str
    activation_bytes: int
    calls: int = 0
    detail: str = ""


# --------------------------------------------------------------------------------------------
# Stage windows over a timeline of live-byte samples (shared with vidmem.offload.measure)


class StageTimeline:
    """Live-byte samples and component-call boundaries, in order; :meth:`peaks` gives each
    component's stage peak over its window (module docstring)."""

    def __init__(self) -> None:
        #: ("sample", level) | ("begin", name) | ("end", name) | ("step", "") | ("spike", level)
        self.events: list[tuple[str, Any]] = []

    def sample(self, level: int) -> None:
        self.events.append(("sample", level))

    def spike(self, level: int) -> None:
        self.events.append(("spike", level))

    def begin(self, name: str) -> None:
        self.events.append(("begin", name))

    def end(self, name: str) -> None:
        self.events.append(("end", name))

    def step_end(self) -> None:
        self.events.append(("step", ""))

    def windows(self) -> dict[str, tuple[int, int]]:
        """``{name: (first event index, last event index)}`` of each component's stage window."""
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        for i, (kind, name) in enumerate(self.events):
            if kind == "begin":
                first.setdefault(name, i)
            elif kind == "end":
                last[name] = i
        out = {}
        for name, start in first.items():
            stop = last.get(name, len(self.events) - 1)
            # extended to the end of the step when the step ends before another component starts
            for j in range(stop + 1, len(self.events)):
                kind, other = self.events[j]
                if kind == "begin" and other != name:
                    break
                if kind == "step":
                    stop = j
                    break
            out[name] = (start, stop)
        return out

    def calls(self, name: str) -> int:
        return sum(1 for kind, n in self.events if kind == "begin" and n == name)

    def peaks(self) -> dict[str, int]:
        """Each component's highest level (or call spike) within its window, including the
        level when the window opened."""
        levels = []
        level = 0
        for kind, value in self.events:
            if kind == "sample":
                level = value
            levels.append(value if kind == "spike" else level)
        return {name: max(levels[start:stop + 1]) for name, (start, stop) in self.windows().items()}


# --------------------------------------------------------------------------------------------
# The pipeline run with simulated components


def _materialize(value: Any) -> Any:
    """Real zero tensors (CPU) in place of the fake tensors of a simulated call's output."""
    from torch.utils._pytree import tree_map

    def real(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return torch.zeros(tuple(x.shape), dtype=x.dtype)
        if type(x).__name__ == "DiagonalGaussianDistribution":  # VAE encode outputs
            return type(x)(real(x.parameters), deterministic=getattr(x, "deterministic", False))
        return x

    return tree_map(real, value)


class _Runner:
    """Simulates component calls for the stand-ins and records them in the timeline."""

    def __init__(self, target: str, num_threads: int | None, one_block: bool):
        self.target = target
        self.num_threads = num_threads
        self.one_block = one_block
        self.timeline = StageTimeline()
        self.results: dict[str, list[SimResult]] = {}
        self.tracker: Any = None
        self.observer: Any = None
        self.seconds = 0.0

    def level(self) -> int:
        return self.tracker.activation_bytes()

    def call(self, name: str, module: torch.nn.Module, method: str, args: tuple,
             kwargs: dict) -> Any:
        self.timeline.begin(name)
        level = self.level()
        # The simulation runs outside the glue's tracker (its modes and module hooks are
        # suspended, in stack order) and inside its own.
        self.observer.__exit__(None, None, None)
        self.tracker.__exit__(None, None, None)
        try:
            if method == "forward":
                result = simulate_call(module, args, kwargs, target=self.target,
                                       num_threads=self.num_threads, one_block=self.one_block)
            else:
                def prepare(sim: Simulation) -> tuple[tuple, dict]:
                    return to_fake(sim, tuple(args)), to_fake(sim, dict(kwargs))

                def run(inputs: tuple[tuple, dict]) -> Any:
                    return getattr(module, method)(*inputs[0], **inputs[1])

                result = simulate_fn(module, prepare, run, target=self.target,
                                     num_threads=self.num_threads)
        finally:
            self.tracker.__enter__()
            self.observer.__enter__()
        self.seconds += result.seconds
        self.results.setdefault(name, []).append(result)
        self.timeline.spike(level + result.peak_bytes)
        out = _materialize(result.output)
        self.timeline.sample(self.level())
        self.timeline.end(name)
        return out


class _StandIn:
    """Takes a component's place in the simulated pipeline: calls (and ``encode``) are simulated,
    every other attribute (config, dtype, helper methods) is the real component's. Not an
    ``nn.Module``, so no module hooks fire; the real module's weights are never touched (only its
    block lists are cut for the duration of a simulated call, :func:`simulate_call`)."""

    def __init__(self, name: str, module: torch.nn.Module, runner: _Runner):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_runner", runner)

    def __getattr__(self, attr: str) -> Any:
        if attr == "encode" and hasattr(self._module, "encode"):
            return lambda *a, **k: self._runner.call(self._name, self._module, "encode", a, k)
        return getattr(self._module, attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._runner.call(self._name, self._module, "forward", args, kwargs)


def _level_observer(runner: _Runner) -> Any:
    from torch.utils._python_dispatch import TorchDispatchMode

    class LevelObserver(TorchDispatchMode):
        """Samples the glue's live bytes after every op (window peaks need the timeline, the
        tracker keeps only the global peak). Tensors an op reads that the tracker has not seen
        were made outside tracked ops (numpy images, tokenizer outputs): they are registered as
        external first, so an in-place op or a view on them is not counted as an allocation."""

        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                               kwargs: dict | None = None) -> Any:
            from torch.utils._pytree import tree_leaves

            kwargs = kwargs or {}
            runner.tracker.track_untracked([t for t in tree_leaves((args, kwargs))
                                            if isinstance(t, torch.Tensor)])
            out = func(*args, **kwargs)
            runner.timeline.sample(runner.level())
            return out

    return LevelObserver()


def pipeline_class(pipe: Any) -> type:
    """The diffusers pipeline class of ``pipe`` (a pipeline or a config-only skeleton)."""
    import diffusers

    name = getattr(pipe, "class_name", None)
    if name is not None and not isinstance(pipe, diffusers.DiffusionPipeline):
        cls = getattr(diffusers, name, None)
        if cls is None:
            raise UnsupportedModel(f"unknown pipeline class {name!r}")
        return cls
    return type(pipe)


def _stand_in_component(name: str, pipe: Any) -> Any:
    """A component the skeleton does not load (tokenizers, schedulers, processors)."""
    index = getattr(pipe, "index", {}) or {}
    spec = index.get(name)
    source = getattr(pipe, "source", None)
    if name.startswith("tokenizer"):
        from ..tiny import tiny_tokenizer

        return tiny_tokenizer(model_max_length=1 << 16)
    if isinstance(spec, list) and len(spec) == 2 and spec[1] is not None:
        import importlib

        library = importlib.import_module(spec[0])
        cls = getattr(library, spec[1])
        if source is not None and hasattr(cls, "from_pretrained"):
            try:
                return cls.from_pretrained(source, subfolder=name)
            except (OSError, ValueError, TypeError):
                pass
        return cls()
    return None


def simulation_pipeline(pipe: Any, runner: _Runner) -> Any:
    """A new instance of ``pipe``'s class whose model components are stand-ins (the real ones
    are untouched), with private copies of the scheduler and guider. Config values
    (``boundary_ratio``, ...) come from the pipeline's config or the skeleton's
    ``model_index.json``; components a skeleton does not load get stand-ins."""
    cls = pipeline_class(pipe)
    components = dict(getattr(pipe, "components", {}) or {})
    index = getattr(pipe, "index", None) or {}
    config = getattr(pipe, "config", None) or {}
    kwargs: dict[str, Any] = {}
    for pname, param in inspect.signature(cls.__init__).parameters.items():
        if pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if pname in components:
            value = components[pname]
            if isinstance(value, torch.nn.Module):
                value = _StandIn(pname, value, runner)
            elif "scheduler" in pname or "guider" in pname:
                value = copy.deepcopy(value)
        elif pname in index:
            spec = index[pname]
            is_component = isinstance(spec, list) and len(spec) == 2
            value = (_stand_in_component(pname, pipe) if is_component and spec[1] is not None
                     else None if is_component else spec)
        elif pname in config and not isinstance(config[pname], (list, tuple)):
            value = config[pname]
        elif param.default is not inspect.Parameter.empty:
            continue
        else:
            value = _stand_in_component(pname, pipe)
        kwargs[pname] = value
    sim = cls(**kwargs)
    if hasattr(sim, "set_progress_bar_config"):
        sim.set_progress_bar_config(disable=True)
    return sim


def call_arguments_for(sim_pipe: Any, workload: Workload,
                       on_step_end: Callable[[], None]) -> dict[str, Any]:
    """The simulated call: latents out, the workload's size, a one-word prompt, and one
    denoising step: two are scheduled (some schedules divide by ``steps - 1``) and the pipeline is
    interrupted at the end of the first (``callback_on_step_end``)."""
    params = inspect.signature(sim_pipe.__call__).parameters
    call: dict[str, Any] = {"num_inference_steps": 2, "output_type": "latent"}
    if "generator" in params:
        call["generator"] = torch.Generator().manual_seed(0)
    if "prompt" in params:
        call["prompt"] = "a"
    for name in ("num_frames", "height", "width"):
        value = getattr(workload, name)
        if value is not None and name in params:
            call[name] = value
    if "image" in params and params["image"].default is inspect.Parameter.empty:
        from PIL import Image

        height = workload.height or params["height"].default
        width = workload.width or params["width"].default
        call["image"] = Image.new("RGB", (int(width), int(height)))
    if "callback_on_step_end" in params:
        def callback(pipe: Any, i: int, t: Any, tensors: dict) -> dict:
            on_step_end()
            pipe._interrupt = True  # the diffusers pipelines skip the remaining steps
            return {}

        call["callback_on_step_end"] = callback
        call["callback_on_step_end_tensor_inputs"] = ["latents"]
    call.update(workload.call_kwargs)
    call.update({"num_inference_steps": 2, "output_type": "latent"})
    return call


def _same_architecture(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    if type(a) is not type(b):
        return False
    pa = [(n, tuple(p.shape)) for n, p in a.named_parameters()]
    pb = [(n, tuple(p.shape)) for n, p in b.named_parameters()]
    return pa == pb


def simulate_pipeline_call(pipe: Any, workload: Workload, *, target: str = "cuda",
                           num_threads: int | None = None,
                           one_block: bool = True) -> dict[str, StagePeak]:
    """Run ``pipe``'s ``__call__`` for one step with simulated components; returns each called
    component's stage peak (module docstring). Components the run did not call but that share an
    architecture with one it did (Wan 2.2's ``transformer_2``) get that one's stage."""
    from .simulate import live_bytes_tracker

    runner = _Runner(target, num_threads, one_block)
    sim_pipe = simulation_pipeline(pipe, runner)
    call = call_arguments_for(sim_pipe, workload, runner.timeline.step_end)
    runner.tracker = live_bytes_tracker()
    runner.observer = _level_observer(runner)
    with runner.tracker, runner.observer:
        sim_pipe(**call)
    peaks = runner.timeline.peaks()
    stages = {name: StagePeak(name, peak, runner.timeline.calls(name),
                              f"pipeline call simulated ({runner.timeline.calls(name)} call"
                              f"{'s' if runner.timeline.calls(name) != 1 else ''})")
              for name, peak in peaks.items()}
    modules = {n: m for n, m in (getattr(pipe, "components", {}) or {}).items()
               if isinstance(m, torch.nn.Module)}
    for name, module in modules.items():
        if name in stages or is_vae(name, module):
            continue
        twin = next((s for s in stages.values() if s.name in modules
                     and _same_architecture(modules[s.name], module)), None)
        if twin is not None:
            stages[name] = StagePeak(name, twin.activation_bytes, 0,
                                     f"not called in the simulated step; as {twin.name}")
    return stages


# --------------------------------------------------------------------------------------------
# The streaming decode


def decode_latents_meta(pipe: Any, workload: Workload) -> torch.Tensor | None:
    """Meta latents in the VAE's native decode layout for the workload's size (``None`` if the
    size is unknown)."""
    from ..decode.families import adapter_for

    vae = getattr(pipe, "vae", None)
    if vae is None:
        return None
    frames, height, width = resolved_size(pipe, workload)
    if not all(isinstance(v, int) for v in (frames, height, width)):
        return None
    adapter = adapter_for(vae)
    sf, tm = adapter.spatial_factor, adapter.time_map
    t_lat = (frames - 1) // tm.factor + 1 if tm.causal_first_frame else -(-frames // tm.factor)
    return adapter.example_latents(t_lat, height // sf, width // sf)


def resolved_size(pipe: Any, workload: Workload) -> tuple[Any, Any, Any]:
    """``(num_frames, height, width)``: the workload's, else the pipeline's ``__call__``
    defaults."""
    params = inspect.signature(pipeline_class(pipe).__call__).parameters

    def default(name: str) -> Any:
        p = params.get(name)
        return None if p is None or p.default is inspect.Parameter.empty else p.default

    return (workload.num_frames or default("num_frames"), workload.height or default("height"),
            workload.width or default("width"))


def simulate_decode(vae: torch.nn.Module, latents: torch.Tensor,
                    options: DecodeOptions | None = None, *, target: str = "cuda",
                    num_threads: int | None = None, decode_kwargs: dict | None = None,
                    windows: int = 2, **decode_shortcuts: Any) -> tuple[StagePeak, Any]:
    """The streaming decode's device peak above the VAE's weights: the first ``windows``
    temporal chunks of :func:`vidmem.decode.stream.device_chunks` on fake tensors, plus the
    full latents (they stay on the device). Returns ``(stage, decode plan)``.

    ``options`` / ``decode_shortcuts`` as in :func:`vidmem.decode_latents`. The plan is made by
    :func:`vidmem.decode.plan_decode` exactly as for the real decode, and executed by a separate
    adapter on fake tensors: the clip's facts travel in the plan, so that adapter decodes the
    clip as the real one will (CogVideoX's frame batches, an image VAE's layout).

    ``tile_size=None`` means what :func:`vidmem.decode.plan_decode` chooses for a VAE that is not
    on a CUDA device (no free-memory reading is given; the planner passes an explicit size for
    CUDA targets)."""
    from ..decode import plan_decode
    from ..decode.families import adapter_for
    from ..decode.stream import device_chunks

    decode_kwargs = dict(decode_kwargs or {})
    if getattr(getattr(vae, "decoder", None), "time_embedder", None) is not None:
        # timestep-conditioned decoders (LTX) take the pipeline's decode timestep; its value does
        # not change memory
        decode_kwargs.setdefault("temb", torch.tensor([0.05]))
    adapter = adapter_for(vae, decode_kwargs)
    plan = plan_decode(vae, latents, DecodeOptions.build(options, **decode_shortcuts),
                       adapter=adapter)
    z_meta = adapter.to_canonical(latents)
    latent_bytes = z_meta.numel() * torch.finfo(torch.float32).bits // 8

    def prepare(sim: Simulation) -> tuple[torch.Tensor, dict]:
        z = sim.fake(torch.empty(tuple(z_meta.shape), device="meta"))
        return z, to_fake(sim, decode_kwargs)

    def run(inputs: tuple[torch.Tensor, dict]) -> None:
        z, kwargs = inputs
        fake_adapter = adapter_for(vae, kwargs)
        for _frames, chunk in device_chunks(fake_adapter, z, plan, "uint8",
                                            windows=plan.windows[:windows]):
            del chunk

    result = simulate_fn(vae, prepare, run, target=target, num_threads=num_threads)
    shown = min(windows, len(plan.windows))
    return StagePeak("vae", result.peak_bytes + latent_bytes, shown,
                     f"decode simulated: {shown} of {len(plan.windows)} chunks, "
                     f"{len(plan.tiles)} tile{'s' if len(plan.tiles) != 1 else ''} each"), plan


@dataclass
class StageSimulation:
    """Every stage of one render, simulated."""

    stages: dict[str, StagePeak]
    decode_plan: Any
    seconds: float
    target: str


def simulate_stages(pipe: Any, workload: Workload | None = None, *, target: str = "cuda",
                    num_threads: int | None = None, one_block: bool = True,
                    decode_tile_size: int | None = None) -> StageSimulation:
    """Each component's stage peak for a render of ``workload`` (module docstring): the
    pipeline's call with simulated components, then the streaming decode. A VAE's stage is the
    larger of its decode and any call the pipeline makes to it (image-to-video encodes)."""
    workload = workload or Workload()
    t0 = time.perf_counter()
    stages = simulate_pipeline_call(pipe, workload, target=target, num_threads=num_threads,
                                    one_block=one_block)
    decode_plan = None
    latents = decode_latents_meta(pipe, workload)
    vae = getattr(pipe, "vae", None)
    if latents is not None and vae is not None:
        options = workload.decode
        if options.tile_size is None and decode_tile_size is not None:
            options = options.with_(tile_size=decode_tile_size)
        decode, decode_plan = simulate_decode(vae, latents, options, target=target,
                                              num_threads=num_threads)
        name = next((n for n, m in (getattr(pipe, "components", {}) or {}).items() if m is vae),
                    "vae")
        if name in stages and stages[name].activation_bytes > decode.activation_bytes:
            stages[name].detail += "; larger than the decode"
        else:
            decode.name = name
            stages[name] = decode
    return StageSimulation(stages, decode_plan, time.perf_counter() - t0, target)
