"""Loading models named on the command line or recorded in a latent checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from .tiny import parse_tiny_model_id, tiny_pipeline

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def pipeline_class_name(model: str) -> str | None:
    """The pipeline class a local model directory declares (``model_index.json``), without
    loading any weights; ``None`` for hub ids (their config is read at load time)."""
    import json

    path = Path(model)
    if not path.exists():
        if "/" in model and not model.startswith((".", "/")) and model.count("/") == 1:
            return None  # looks like a hub id
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
