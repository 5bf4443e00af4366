"""What vidmem reads from a diffusers video pipeline: which pipelines qualify, their frame and
size rules, their required inputs, their default frame rate, and the clip a call will produce.

Why no per-pipeline rules: vidmem used to re-implement, one hand-written rule per pipeline
class, how each ``__call__`` turns its latents into VAE input. That covered 20 of the 75 video
pipelines in diffusers 0.42.1 and fell behind with every release. Now the pipeline's own call
runs with its VAE's ``decode`` captured (:mod:`vidmem.capture`), so the latents are exactly the
ones it decodes; what is left to know about a pipeline is read here from the pipeline object
(its signature, its VAE's family adapter, its denoiser's patch size) or, before any weight is
loaded, from the same classes built on the meta device. Family specifics of the decode itself
stay in :mod:`vidmem.decode.families`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import InvalidOptions, UnsupportedModel


@dataclass
class DecodeInput:
    """What the VAE decode needs: latents in the VAE's own ``decode`` layout plus its extras
    (e.g. LTX's decode timestep ``temb``), exactly as the pipeline passed them."""

    latents: torch.Tensor
    decode_kwargs: dict[str, Any] = field(default_factory=dict)


#: call arguments that state the frame rate a pipeline conditions its model on.
FPS_ARGUMENTS = ("fps", "frame_rate")


@dataclass(frozen=True)
class PipelineFacts:
    """The rules a render of one pipeline checks before denoising, read from the pipeline."""

    pipeline_class: str
    #: the VAE family (its :mod:`vidmem.decode.families` adapter's name, ``"generic"`` if none).
    family: str
    #: pixel frames come in ``temporal_factor * k + 1`` (causal VAEs) or multiples (others).
    temporal_factor: int
    causal_first_frame: bool
    #: height and width must be multiples of this (the VAE's factor x the denoiser's patch).
    spatial_multiple: int
    default_fps: float
    #: whether the call's ``num_frames`` follows the VAE's frame rule: true unless the
    #: pipeline's own default breaks it (Helios' 132 frames are generated in 33-frame chunks).
    frame_rule: bool
    #: ``__call__`` parameters with no default (e.g. ``image`` of image-to-video pipelines).
    required_inputs: tuple[str, ...] = ()

    def frames_error(self, frames: int) -> str | None:
        """Why ``frames`` cannot be produced by this pipeline (with the nearest valid counts)."""
        k = self.temporal_factor
        if not self.frame_rule or k <= 1:
            return None
        if self.causal_first_frame:
            if (frames - 1) % k == 0:
                return None
            lower = max(1, (frames - 1) // k * k + 1)
            return (f"{frames} frames is not valid for {self.pipeline_class}: its {self.family} "
                    f"VAE makes {k}k+1 frames; nearest valid: {lower} or {lower + k}")
        if frames % k == 0:
            return None
        lower = max(k, frames // k * k)
        return (f"{frames} frames is not valid for {self.pipeline_class}: its {self.family} VAE "
                f"makes multiples of {k} frames; nearest valid: {lower} or {lower + k}")

    def size_error(self, name: str, value: int) -> str | None:
        """Why ``height`` / ``width`` ``value`` cannot be taken (with the nearest valid values)."""
        m = self.spatial_multiple
        if value % m == 0:
            return None
        down = max(m, value // m * m)
        return (f"{name} {value} must be a multiple of {m} for {self.pipeline_class} (its VAE's "
                f"spatial factor x its patch size); try {down} or {down + m}")

    def fps_for(self, call: dict[str, Any]) -> float:
        """The MP4's frame rate for a call: the ``fps`` / ``frame_rate`` the call conditions the
        model on (given, or the signature's default in ``call``), else the family's."""
        for name in FPS_ARGUMENTS:
            value = call.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return float(value)
        return self.default_fps

    def missing_inputs(self, given: dict[str, Any]) -> list[str]:
        """Required ``__call__`` arguments that ``given`` leaves out."""
        return [name for name in self.required_inputs if given.get(name) is None]


def call_signature(pipeline_class: type) -> inspect.Signature:
    return inspect.signature(pipeline_class.__call__)


def is_video_pipeline_class(pipeline_class: type) -> bool:
    """A diffusers pipeline whose frames come from a VAE decode of a clip: it has a ``vae``
    component and either a ``num_frames`` argument or a ``VideoProcessor`` (SVD, AnimateDiff's
    video-to-video). Read from the class, not from a list, so a new pipeline qualifies on the day
    it ships."""
    try:
        init = inspect.signature(pipeline_class.__init__).parameters
        params = call_signature(pipeline_class).parameters
    except (TypeError, ValueError):
        return False
    if "vae" not in init or "output_type" not in params:
        return False
    if "num_frames" in params:
        return True
    module = inspect.getmodule(pipeline_class)
    try:
        return "VideoProcessor(" in inspect.getsource(module)
    except (OSError, TypeError):
        return False


def video_pipeline_classes() -> list[str]:
    """Every pipeline class of the installed diffusers that :func:`is_video_pipeline_class`
    accepts (imports each pipeline module once: a few seconds)."""
    import diffusers

    names = []
    for name in sorted(dir(diffusers)):
        if not name.endswith("Pipeline") or name in ("DiffusionPipeline", "AutoPipeline"):
            continue
        try:
            cls = getattr(diffusers, name)
        except Exception:  # an optional dependency missing for that pipeline
            continue
        if isinstance(cls, type) and is_video_pipeline_class(cls):
            names.append(name)
    return names


def _patch_size(denoiser_config: Any) -> int:
    patch = getattr(denoiser_config, "patch_size", None) if denoiser_config is not None else None
    if patch is None and isinstance(denoiser_config, dict):
        patch = denoiser_config.get("patch_size")
    if isinstance(patch, (list, tuple)):
        patch = patch[-1] if patch else 1
    return int(patch) if isinstance(patch, int) and patch > 0 else 1


def _vae_factors(vae: Any, pipe: Any = None) -> tuple[str, int, bool, int, int]:
    """``(family, temporal factor, causal, spatial factor, default fps)`` of ``vae``: from its
    family adapter, or (an unknown VAE) from the factors the pipeline and config state."""
    from .decode.families import adapter_for
    from .decode.families.base import config_value
    from .decode.families.generic import GenericAdapter

    adapter = adapter_for(vae)
    if not isinstance(adapter, GenericAdapter):
        tm = adapter.time_map
        return adapter.name, tm.factor, tm.causal_first_frame, adapter.spatial_factor, \
            adapter.default_fps
    temporal = (getattr(pipe, "vae_scale_factor_temporal", None)
                or getattr(pipe, "vae_temporal_compression_ratio", None)
                or config_value(vae, "temporal_compression_ratio", "scale_factor_temporal",
                                default=1))
    spatial = (getattr(pipe, "vae_scale_factor_spatial", None)
               or getattr(pipe, "vae_spatial_compression_ratio", None)
               or getattr(pipe, "vae_scale_factor", None)
               or config_value(vae, "spatial_compression_ratio", "scale_factor_spatial",
                               default=8))
    temporal = int(temporal) if isinstance(temporal, (int, float)) else 1
    spatial = int(spatial) if isinstance(spatial, (int, float)) else 8
    return adapter.name, temporal, temporal > 1, spatial, adapter.default_fps


def facts_from(pipeline_class: type, vae: Any, denoiser_config: Any = None,
               pipe: Any = None) -> PipelineFacts:
    """The facts of ``pipeline_class`` with this ``vae`` (real or on the meta device) and the
    denoiser's config (its patch size multiplies the VAE's spatial factor)."""
    family, temporal, causal, spatial, fps = _vae_factors(vae, pipe)
    params = call_signature(pipeline_class).parameters
    default_frames = params["num_frames"].default if "num_frames" in params else None
    # an unknown (generic) VAE's frame rule is not known before it decodes: the pipeline checks
    frame_rule = family != "generic"
    if frame_rule and isinstance(default_frames, int) and temporal > 1:
        frame_rule = ((default_frames - 1) % temporal == 0) if causal \
            else default_frames % temporal == 0
    for name in FPS_ARGUMENTS:  # the rate the pipeline conditions on, when it has one
        default = params[name].default if name in params else None
        if isinstance(default, (int, float)) and not isinstance(default, bool) and default > 0:
            fps = default
            break
    required = tuple(name for name, p in params.items()
                     if name != "self" and p.default is inspect.Parameter.empty
                     and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    return PipelineFacts(pipeline_class=pipeline_class.__name__, family=family,
                         temporal_factor=temporal, causal_first_frame=causal,
                         spatial_multiple=spatial * _patch_size(denoiser_config),
                         default_fps=float(fps), frame_rule=frame_rule,
                         required_inputs=required)


def check_video_pipeline(pipe: Any) -> None:
    """Refuse, in one line, what vidmem cannot render: an object that is not a diffusers
    pipeline, a pipeline with no VAE to decode, an image pipeline."""
    from diffusers import DiffusionPipeline

    name = type(pipe).__name__
    if not isinstance(pipe, DiffusionPipeline):
        raise UnsupportedModel(f"{name} is not a diffusers pipeline; pass one, e.g. "
                               f"WanPipeline.from_pretrained(...)")
    vae = getattr(pipe, "vae", None)
    if vae is None or not callable(getattr(vae, "decode", None)):
        raise UnsupportedModel(f"{name} has no VAE decode to stream (its frames do not come from "
                               f"a vae.decode); vidmem renders video pipelines with a VAE")
    if not is_video_pipeline_class(type(pipe)):
        raise UnsupportedModel(f"{name} is not a video pipeline (no num_frames argument, no "
                               f"VideoProcessor); vidmem renders video pipelines")


def facts_for(pipe: Any) -> PipelineFacts:
    """The facts of a loaded pipeline (checked to be a video pipeline first)."""
    check_video_pipeline(pipe)
    denoiser = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    return facts_from(type(pipe), pipe.vae, getattr(denoiser, "config", None), pipe)


def call_arguments(pipe: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments ``pipe.__call__`` will see: ``kwargs`` plus the signature's defaults.

    A bad argument name fails here, before denoising; the sizes a call leaves to the pipeline
    are read from its defaults."""
    signature = inspect.signature(pipe.__call__)
    try:
        bound = signature.bind_partial(**kwargs)
    except TypeError:
        params = signature.parameters
        unknown = sorted(set(kwargs) - set(params))
        names = ", ".join(n for n in params if n != "kwargs")
        raise InvalidOptions(f"{type(pipe).__name__} takes no argument(s) {', '.join(unknown)}; it "
                             f"takes: {names}") from None
    bound.apply_defaults()
    args = dict(bound.arguments)
    args.update(args.pop("kwargs", None) or {})
    return args


def expected_clip_size(pipe: Any, call: dict[str, Any]) -> tuple[int, int, int] | None:
    """``(frames, height, width)`` the call will produce, from its arguments or, where it leaves
    them to the pipeline (``None``), the component configs the pipeline itself falls back to
    (Mochi's ``default_height``, CogVideoX's transformer sample size, SVD's UNet frame count,
    AnimateDiff's UNet sample size). ``None`` when some of it cannot be known before running."""
    def config(module_name: str, key: str) -> Any:
        module = getattr(pipe, module_name, None)
        return getattr(getattr(module, "config", None), key, None)

    frames = call.get("num_frames") or config("transformer", "sample_frames") \
        or config("unet", "num_frames")
    sizes = []
    for name in ("height", "width"):
        value = call.get(name) or getattr(pipe, f"default_{name}", None)
        if value is None and config("transformer", f"sample_{name}") is not None:
            factor = getattr(pipe, "vae_scale_factor_spatial", None)
            value = config("transformer", f"sample_{name}") * factor if factor else None
        if value is None and config("unet", "sample_size") is not None:
            factor = getattr(pipe, "vae_scale_factor", None)
            size = config("unet", "sample_size")
            size = size if isinstance(size, int) else size[0 if name == "height" else 1]
            value = size * factor if factor else None
        sizes.append(value)
    if not all(isinstance(v, int) and v > 0 for v in (frames, *sizes)):
        return None
    return int(frames), int(sizes[0]), int(sizes[1])


def clip_latents(vae: torch.nn.Module, frames: int, height: int,
                 width: int) -> torch.Tensor | None:
    """Meta latents, in ``vae``'s ``decode`` layout, of a clip of ``frames`` x ``height`` x
    ``width`` pixels (``None`` for VAEs whose factors are only known by decoding)."""
    from .decode.families import adapter_for
    from .decode.families.generic import GenericAdapter

    adapter = adapter_for(vae)
    if isinstance(adapter, GenericAdapter):
        return None  # its factors are probed by decoding: nothing to know beforehand
    tm, sf = adapter.time_map, adapter.spatial_factor
    t_lat = (frames - 1) // tm.factor + 1 if tm.causal_first_frame else -(-frames // tm.factor)
    param = next(vae.parameters(), None)
    latents = adapter.example_latents(t_lat, height // sf, width // sf)
    return latents.to(param.dtype) if param is not None else latents


def expected_vae_latents(pipe: Any, call: dict[str, Any],
                         facts: PipelineFacts | None = None) -> torch.Tensor | None:
    """Meta latents of the shape the decode will receive (the VAE's ``decode`` layout), for
    validating decode options and sizing the checkpoint before denoising; ``None`` if unknown
    (or when the pipeline's frame count does not follow its VAE's rule, as for pipelines that
    generate in chunks: their decode is known only once it is captured)."""
    size = expected_clip_size(pipe, call)
    vae = getattr(pipe, "vae", None)
    if size is None or vae is None or (facts is not None and not facts.frame_rule):
        return None
    return clip_latents(vae, *size)


#: how a CLI user passes a required input (anything else: ``--arg NAME=VALUE``).
CLI_INPUTS = {"image": "--image PATH", "video": "--video PATH", "prompt": "--prompt TEXT"}


def facts_for_model(model: str, class_name: str) -> PipelineFacts | None:
    """The facts of the pipeline saved at ``model`` (class ``class_name``), before loading it:
    the VAE and the denoiser's config built on the meta device. ``None`` where the configs are
    not on this machine (a hub id: :func:`vidmem.render` checks after loading). The libraries'
    import-time notices are kept off stderr here, where a refusal must be one line."""
    import warnings

    import transformers

    level = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _facts_for_model(model, class_name)
    finally:
        transformers.utils.logging.set_verbosity(level)


def _facts_for_model(model: str, class_name: str) -> PipelineFacts | None:
    import json
    from pathlib import Path

    import diffusers

    from .tiny import parse_tiny_model_id, tiny_pipeline

    cls = getattr(diffusers, class_name, None)
    if not isinstance(cls, type):
        raise UnsupportedModel(f"{class_name} is not a pipeline class of the installed diffusers "
                               f"{diffusers.__version__}; upgrade diffusers or check the model's "
                               f"model_index.json")
    if not is_video_pipeline_class(cls):
        raise UnsupportedModel(f"{class_name} is not a video pipeline (no num_frames argument, no "
                               f"VideoProcessor); vidmem renders video pipelines")
    tiny = parse_tiny_model_id(model)
    if tiny:
        return facts_for(tiny_pipeline(*tiny))
    if not Path(model).is_dir():  # a hub id: the configs vidmem.shapes reproduces, if known
        from .shapes import known_pipeline_configs

        known = known_pipeline_configs(model)
        if known is None:
            return None
        model = str(known)
    from .loading import vae_skeleton

    vae = vae_skeleton(model)
    if vae is None:
        raise UnsupportedModel(f"{model} has no vae component (model_index.json); vidmem streams "
                               f"a VAE decode")
    denoiser = None
    for name in ("transformer", "unet"):
        config = Path(model) / name / "config.json"
        if config.is_file():
            denoiser = json.loads(config.read_text())
            break
    return facts_from(cls, vae, denoiser)
