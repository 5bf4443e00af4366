"""Loading models named on the command line or recorded in a latent checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .tiny import parse_tiny_model_id, tiny_pipeline

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def pipeline_class_name(model: str) -> str | None:
    """The pipeline class a local model directory declares (``model_index.json``), without
    loading any weights; for hub ids the class of a well-known one (``vidmem.shapes``), else
    ``None`` (their config is read at load time)."""
    import json

    path = Path(model)
    if not path.exists():
        if "/" in model and not model.startswith((".", "/")) and model.count("/") == 1:
            from .shapes import KNOWN_HUB_PIPELINES

            known = KNOWN_HUB_PIPELINES.get(model)
            return known[0] if known else None  # a hub id
        raise FileNotFoundError(f"model {model!r} not found: pass a diffusers pipeline directory "
                                f"(written by save_pretrained) or a hub id like org/name")
    index = path / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{model!r} has no model_index.json; pass a diffusers pipeline "
                                f"directory (written by save_pretrained)")
    return json.loads(index.read_text()).get("_class_name")


def load_pipeline(model: str, dtype: torch.dtype | None = None):
    """``DiffusionPipeline.from_pretrained`` (tiny-pipeline ids build offline instead)."""
    tiny = parse_tiny_model_id(model)
    if tiny is not None:
        pipe = tiny_pipeline(*tiny)
        return pipe.to(dtype=dtype) if dtype is not None else pipe
    from diffusers import DiffusionPipeline

    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    pipe = DiffusionPipeline.from_pretrained(model, **kwargs)
    pipe._vidmem_model_id = str(Path(model).resolve()) if Path(model).exists() else model
    return pipe


def load_vae(model: str, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The VAE of ``model``: a tiny-pipeline id, a local pipeline directory, or a hub id.

    Only the VAE is loaded (``subfolder="vae"``), so resuming a decode never loads the
    transformer or text encoders.
    """
    tiny = parse_tiny_model_id(model)
    if tiny is not None:
        vae = tiny_pipeline(*tiny).vae
        return vae.to(dtype) if dtype is not None else vae
    from diffusers import AutoModel

    path = Path(model)
    if path.exists() and not (path / "vae").is_dir():
        raise FileNotFoundError(f"{model!r} has no vae/ folder; pass a diffusers pipeline "
                                f"directory (as written by save_pretrained)")
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    return AutoModel.from_pretrained(model, subfolder="vae", **kwargs).eval()


class PipelineSkeleton:
    """A pipeline's model components with their real shapes and dtypes but no weights (meta
    tensors), built from the configs alone, for planning: ``plan_offload`` and ``plan_decode``
    need sizes, not values. Has what those read: ``components``, ``model_cpu_offload_seq``,
    ``_exclude_from_cpu_offload``, ``vae``; and, for the memory simulation
    (:mod:`vidmem.offload.stages`), where the configs came from (``source``) and the
    ``model_index.json`` (``index``: scheduler classes, config values such as
    ``boundary_ratio``)."""

    def __init__(self, class_name: str, components: dict[str, Any], source: str | None = None,
                 index: dict[str, Any] | None = None):
        import diffusers

        self.class_name = class_name
        self.components = components
        self.source = source
        self.index = dict(index or {})
        cls = getattr(diffusers, class_name, None)
        self.model_cpu_offload_seq = getattr(cls, "model_cpu_offload_seq", None)
        self._exclude_from_cpu_offload = list(getattr(cls, "_exclude_from_cpu_offload", []) or [])
        for name, module in components.items():
            setattr(self, name, module)

    def __repr__(self) -> str:
        return f"PipelineSkeleton({self.class_name}, {sorted(self.components)})"


def load_pipeline_skeleton(model: str, dtype: torch.dtype | None = None):
    """The model components of ``model`` on the meta device (no weights read), or the tiny
    pipeline itself for ``vidmem-tiny:`` ids. Needs only ``model_index.json`` and each
    component's config (a few KB from the hub for hub ids)."""
    import json

    tiny = parse_tiny_model_id(model)
    if tiny is not None:
        return load_pipeline(model, dtype)
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    path = Path(model)
    if not path.exists():
        model = _hub_configs(model)
        path = Path(model)
    if path.exists():
        class_name = pipeline_class_name(model)
        index = json.loads((path / "model_index.json").read_text())
    else:
        from huggingface_hub import hf_hub_download

        index = json.loads(Path(hf_hub_download(model, "model_index.json")).read_text())
        class_name = index.get("_class_name")
    components: dict[str, Any] = {}
    verbosity = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()  # no "keep in float32" notes for meta casts
    try:
        for name, spec in index.items():
            module = _component_skeleton(model, name, spec, diffusers, transformers,
                                         init_empty_weights)
            if module is not None:
                components[name] = module.to(dtype) if dtype is not None else module
    finally:
        diffusers.utils.logging.set_verbosity(verbosity)
    return PipelineSkeleton(class_name, components, source=model, index=index)


def _hub_configs(model: str) -> str:
    """Where to read a hub id's configs from: the hub (``model`` itself), or, for a well-known id
    when the hub cannot be reached (``HF_HUB_OFFLINE=1``, no network), the configs
    ``vidmem.shapes`` reproduces. Other ids fail here with one clear line when offline."""
    import os

    from .shapes import known_pipeline_configs

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if not offline:
        try:
            from huggingface_hub import hf_hub_download

            hf_hub_download(model, "model_index.json")
            return model
        except Exception as e:  # noqa: BLE001 - hub errors have many types; all mean "cannot read"
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    else:
        reason = "HF_HUB_OFFLINE is set"
    known = known_pipeline_configs(model)
    if known is None:
        raise OSError(f"cannot read the configs of {model!r} from the hub ({reason}); pass a local "
                      f"pipeline directory, or one of the ids vidmem knows offline: "
                      f"{', '.join(_known_ids())}")
    return str(known)


def _known_ids() -> list[str]:
    from .shapes import KNOWN_HUB_PIPELINES

    return sorted(KNOWN_HUB_PIPELINES)


def _component_skeleton(model: str, name: str, spec: Any, diffusers: Any, transformers: Any,
                        init_empty_weights: Any) -> torch.nn.Module | None:
    """One component on the meta device from its config; ``None`` if it has no weights."""
    if name.startswith("_") or not isinstance(spec, list) or len(spec) != 2 or spec[1] is None:
        return None
    library, cls_name = spec
    if library == "diffusers":
        cls = getattr(diffusers, cls_name, None)
        if cls is None or not issubclass(cls, diffusers.ModelMixin):
            return None  # schedulers and the like: no weights
        config = cls.load_config(model, subfolder=name)
        with init_empty_weights():
            return cls.from_config(config)
    if library == "transformers":
        cls = getattr(transformers, cls_name, None)
        if cls is None or not issubclass(cls, transformers.PreTrainedModel):
            return None  # tokenizers, processors
        config = transformers.AutoConfig.from_pretrained(model, subfolder=name)
        with init_empty_weights():
            return cls._from_config(config)
    return None
