"""Loading models named on the command line or recorded in a latent checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from .tiny import parse_tiny_model_id, tiny_pipeline

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


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
