"""Loading models named on the command line or recorded in a latent checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .errors import ModelNotFound
from .tiny import parse_tiny_model_id, tiny_pipeline

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def looks_like_hub_id(model: str) -> bool:
    """``org/name`` that is not a local path."""
    return (model.count("/") == 1 and not model.startswith((".", "/", "~"))
            and all(part.strip() for part in model.split("/")) and not Path(model).exists())


def read_model_index(model: str) -> dict[str, Any]:
    """A local pipeline directory's ``model_index.json``, with errors that name the file and the
    problem (missing, not JSON, no ``_class_name``)."""
    import json

    path = Path(model)
    if not path.exists():
        raise ModelNotFound(f"model {model!r} not found: pass a diffusers pipeline directory "
                                f"(written by save_pretrained) or a hub id like org/name")
    if not path.is_dir():
        raise ModelNotFound(f"model {model!r} is a file; pass the diffusers pipeline "
                                f"directory (written by save_pretrained)")
    index_path = path / "model_index.json"
    if not index_path.is_file():
        raise ModelNotFound(f"{model!r} has no model_index.json; pass a diffusers pipeline "
                                f"directory (written by save_pretrained)")
    try:
        index = json.loads(index_path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelNotFound(f"{index_path} is not valid JSON ({e}); re-save the pipeline with "
                         f"save_pretrained or repair the file") from None
    if not isinstance(index, dict):
        raise ModelNotFound(f"{index_path} must hold a JSON object, not {type(index).__name__}")
    if not isinstance(index.get("_class_name"), str) or not index["_class_name"]:
        raise ModelNotFound(f"{index_path} has no \"_class_name\" naming the pipeline class (e.g. "
                         f"\"WanPipeline\"); re-save the pipeline with save_pretrained")
    return index


def pipeline_class_name(model: str) -> str | None:
    """The pipeline class a local model directory declares (``model_index.json``), without
    loading any weights; for hub ids the class of a well-known one (``vidmem.shapes``), else
    ``None`` (their config is read at load time)."""
    if looks_like_hub_id(model):
        from .shapes import KNOWN_HUB_PIPELINES

        known = KNOWN_HUB_PIPELINES.get(model)
        return known[0] if known else None
    return read_model_index(model)["_class_name"]


#: how long to wait for the hub before saying it cannot be reached.
HUB_CONNECT_TIMEOUT_S = 3.0


def hub_unreachable_reason(model: str) -> str | None:
    """Why hub id ``model`` cannot be fetched now (offline mode, or no connection to the hub
    endpoint within :data:`HUB_CONNECT_TIMEOUT_S`), or ``None`` if it can be (or is cached).

    Why: without this, ``from_pretrained`` retries for tens of seconds and prints the same log
    line several times before failing with a long traceback."""
    import os
    import socket
    import threading
    from urllib.parse import urlparse

    try:
        from huggingface_hub import snapshot_download

        snapshot_download(model, local_files_only=True, allow_patterns=["model_index.json"])
        return None  # in the local cache: loads offline
    except Exception:  # noqa: BLE001 - not cached (the error types vary across versions)
        pass
    advice = "pass a local directory or connect to the network (or download it first)"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return f"{model!r} is a hub id, but HF_HUB_OFFLINE is set and it is not cached: {advice}"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=HUB_CONNECT_TIMEOUT_S).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e)

    # Name resolution has no timeout of its own: run it on a thread and stop waiting.
    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(HUB_CONNECT_TIMEOUT_S + 0.5)
    if outcome and outcome[0] is None:
        return None
    why = f"{outcome[0]}" if outcome else f"no answer in {HUB_CONNECT_TIMEOUT_S:g} s"
    return f"cannot reach {endpoint} to download {model!r} ({why}): {advice}"


def check_model_reachable(model: str) -> None:
    """Raise ``OSError`` at once for a hub id that cannot be downloaded now."""
    if parse_tiny_model_id(model) is None and looks_like_hub_id(model):
        reason = hub_unreachable_reason(model)
        if reason:
            raise ModelNotFound(reason)


def load_pipeline(model: str, dtype: torch.dtype | None = None):
    """``DiffusionPipeline.from_pretrained`` (tiny-pipeline ids build offline instead)."""
    tiny = parse_tiny_model_id(model)
    if tiny is not None:
        pipe = tiny_pipeline(*tiny)
        return pipe.to(dtype=dtype) if dtype not in (None, pipe.vae.dtype) else pipe
    from diffusers import DiffusionPipeline

    check_model_reachable(model)
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    pipe = DiffusionPipeline.from_pretrained(model, **kwargs)
    pipe._vidmem_model_id = str(Path(model).resolve()) if Path(model).exists() else model
    return pipe


def check_model_source(model: str) -> None:
    """Fail at once for a model that names nothing loadable: a missing path, or a hub id that
    cannot be reached (tiny ids and existing paths pass; loading reports the rest)."""
    if parse_tiny_model_id(model) is not None or Path(model).exists():
        return
    if not looks_like_hub_id(model):
        raise ModelNotFound(f"model {model!r} not found: pass a diffusers pipeline directory "
                                f"(written by save_pretrained) or a hub id like org/name")
    check_model_reachable(model)


def load_vae(model: str, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The VAE of ``model``: a tiny-pipeline id, a local pipeline directory, or a hub id.

    Only the VAE is loaded (``subfolder="vae"``), so resuming a decode never loads the
    transformer or text encoders.
    """
    tiny = parse_tiny_model_id(model)
    if tiny is not None:
        vae = tiny_pipeline(*tiny).vae
        return vae.to(dtype) if dtype not in (None, vae.dtype) else vae
    from diffusers import AutoModel

    path = Path(model)
    check_model_source(model)
    if path.exists() and not (path / "vae").is_dir():
        raise ModelNotFound(f"{model!r} has no vae/ folder; pass a diffusers pipeline "
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
        cls = getattr(diffusers, class_name, None)
        self.model_cpu_offload_seq = getattr(cls, "model_cpu_offload_seq", None)
        self._exclude_from_cpu_offload = list(getattr(cls, "_exclude_from_cpu_offload", []) or [])
        self.source = source
        self.index = dict(index or {})
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
        index = read_model_index(model)
        class_name = index["_class_name"]
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
                module = module.to(dtype) if dtype is not None else module
                # as from_pretrained returns them: in eval mode (dropout off), or a simulated
                # text encoder would count dropout masks that inference never makes
                components[name] = module.eval() if isinstance(module, torch.nn.Module) else module
    finally:
        diffusers.utils.logging.set_verbosity(verbosity)
    return PipelineSkeleton(class_name, components, source=model, index=index)


def _hub_configs(model: str) -> str:
    """Where to read a hub id's configs from: the hub (``model`` itself, when it can be reached
    or is cached), or, for a well-known id when it cannot (``HF_HUB_OFFLINE=1``, no network),
    the configs ``vidmem.shapes`` reproduces. Other ids fail here with one clear line."""
    from .shapes import known_pipeline_configs

    if not looks_like_hub_id(model):
        raise ModelNotFound(f"model {model!r} not found: pass a diffusers pipeline directory "
                                f"(written by save_pretrained) or a hub id like org/name")
    reason = hub_unreachable_reason(model)
    if reason is None:
        return model
    known = known_pipeline_configs(model)
    if known is None:
        raise ModelNotFound(f"{reason}; vidmem knows these ids offline: "
                              f"{', '.join(_known_ids())}")
    return str(known)


def _known_ids() -> list[str]:
    from .shapes import KNOWN_HUB_PIPELINES

    return sorted(KNOWN_HUB_PIPELINES)


def vae_skeleton(model: str) -> torch.nn.Module | None:
    """A local pipeline's VAE on the meta device, from its config alone (no weights read), for
    checking decode options before loading; ``None`` if the pipeline has no (known) VAE."""
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    index = read_model_index(model)
    spec = index.get("vae")
    if spec is None:
        return None
    return _component_skeleton(model, "vae", spec, diffusers, transformers, init_empty_weights)


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
