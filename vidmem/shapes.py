"""Real model shapes (configs only, no weights) for planning and GPU benchmarks.

Why: speed and memory depend on shapes, not weight values. These configs reproduce the published
Wan 2.1 checkpoints' architectures so plans and benchmarks can be made without downloading tens of
gigabytes: ``write_config_only_pipeline`` writes a pipeline directory with every config and no
weight file, which ``vidmem plan --model DIR`` plans from (it never reads weights), and GPU
benchmarks instantiate with random weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Hub ids whose configs are reproduced here: ``vidmem plan --model ID`` plans them offline
#: (``HF_HUB_OFFLINE=1`` or no network) from :func:`write_config_only_pipeline`.
KNOWN_HUB_PIPELINES = {
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": ("WanPipeline", "1.3B"),
    "Wan-AI/Wan2.1-T2V-14B-Diffusers": ("WanPipeline", "14B"),
}

#: WanTransformer3DModel configs of the released Wan 2.1 T2V checkpoints.
WAN21_TRANSFORMER = {
    "1.3B": dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128,
                 in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960,
                 num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6),
    "14B": dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128,
                in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824,
                num_layers=40, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6),
}
#: AutoencoderKLWan: the Wan 2.1 VAE is the class default (base_dim 96, z_dim 16).
WAN21_VAE: dict[str, Any] = {}
#: umt5-xxl encoder, as shipped with Wan 2.1.
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                num_heads=64, relative_attention_num_buckets=32,
                relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
                dense_act_fn="gelu_new", is_gated_act=True, pad_token_id=0, eos_token_id=1,
                decoder_start_token_id=0, tie_word_embeddings=False)


def write_config_only_pipeline(directory: str | Path, size: str = "1.3B") -> Path:
    """A ``WanPipeline`` directory of Wan 2.1 ``size`` with configs and no weights."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import UMT5Config

    directory = Path(directory)
    with init_empty_weights():
        WanTransformer3DModel(**WAN21_TRANSFORMER[size]).save_config(directory / "transformer")
        AutoencoderKLWan(**WAN21_VAE).save_config(directory / "vae")
    UMT5Config(**UMT5_XXL).save_pretrained(directory / "text_encoder")
    FlowMatchEulerDiscreteScheduler(shift=5.0).save_config(directory / "scheduler")
    index = {"_class_name": "WanPipeline", "_diffusers_version": "0.42.1",
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "text_encoder": ["transformers", "UMT5EncoderModel"],
             "tokenizer": ["transformers", "T5TokenizerFast"],
             "transformer": ["diffusers", "WanTransformer3DModel"],
             "vae": ["diffusers", "AutoencoderKLWan"]}
    (directory / "model_index.json").write_text(json.dumps(index, indent=2))
    return directory


def known_pipeline_configs(model_id: str) -> Path | None:
    """A config-only directory for a well-known hub id (:data:`KNOWN_HUB_PIPELINES`), written
    once under ``$VIDMEM_CACHE`` (default ``~/.cache/vidmem``); ``None`` for other ids."""
    import os

    known = KNOWN_HUB_PIPELINES.get(model_id)
    if known is None:
        return None
    cache = Path(os.environ.get("VIDMEM_CACHE", Path.home() / ".cache" / "vidmem"))
    directory = cache / "configs" / model_id.replace("/", "--")
    if not (directory / "model_index.json").exists():
        write_config_only_pipeline(directory, known[1])
    return directory
