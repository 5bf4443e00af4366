"""Tiny builds of the AnyFlow pipelines (``diffusers/pipelines/anyflow``): ``AnyFlowPipeline``
(bidirectional flow-map sampling over the whole clip) and ``AnyFlowFARPipeline`` (chunk-wise
autoregressive rollout with a KV cache over past chunks). Both keep their latents as
``(B, T, C, H, W)`` during sampling and permute back to ``(B, C, T, H, W)`` for ONE final
``vae.decode`` of the whole clip (the FAR chunks are written into one latent buffer first)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vidmem.tiny import tiny_tokenizer

from . import ZooCase
from .wan_zoo import generator, umt5, wan_vae

_H, _W = 32, 32
_T2V_FRAMES = 9
# FAR: 17 frames = 5 latent frames, in chunks of 1 + 2 + 2 latent frames (the released
# checkpoints use (1, 3, 3, 3, 3, 3, 3, 2) for 81 frames); a full-attention window of 2 chunks,
# so the third chunk also attends to a FAR-compressed (patch 1x4x4) copy of the first.
_FAR_FRAMES, _FAR_PARTITION = 17, (1, 2, 2)


def _common(seed: int):
    from diffusers import FlowMapEulerDiscreteScheduler

    return dict(vae=wan_vae(seed), text_encoder=umt5(seed + 1), tokenizer=tiny_tokenizer(),
                scheduler=FlowMapEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0))


_TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                    in_channels=16, out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32,
                    num_layers=2, cross_attn_norm=True, rope_max_seq_len=32, gate_value=0.25,
                    deltatime_type="r")


def _anyflow(seed: int):
    from diffusers import AnyFlowPipeline, AnyFlowTransformer3DModel

    common = _common(seed)
    torch.manual_seed(seed + 2)
    transformer = AnyFlowTransformer3DModel(**_TRANSFORMER).eval()
    pipe = AnyFlowPipeline(transformer=transformer, **common)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _anyflow_call() -> dict[str, Any]:
    return dict(prompt="a red panda eating bamboo", negative_prompt="blurry", height=_H,
                width=_W, num_frames=_T2V_FRAMES, num_inference_steps=2, guidance_scale=4.0,
                max_sequence_length=16, generator=generator(0))


def _anyflow_far(seed: int):
    from diffusers import AnyFlowFARPipeline, AnyFlowFARTransformer3DModel

    common = _common(seed)
    torch.manual_seed(seed + 2)
    transformer = AnyFlowFARTransformer3DModel(
        compressed_patch_size=(1, 4, 4), full_chunk_limit=2, chunk_partition=_FAR_PARTITION,
        **_TRANSFORMER).eval()
    pipe = AnyFlowFARPipeline(transformer=transformer, **common)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _anyflow_far_call() -> dict[str, Any]:
    # Single-frame I2V as in the docstring: a (B, T, C, H, W) tensor in [0, 1].
    first = np.random.default_rng(11).random((_H, _W, 3), dtype=np.float32)
    context = torch.from_numpy(first).permute(2, 0, 1)[None, None]
    return dict(prompt="a cat walks across a sunlit lawn", video=context, height=_H, width=_W,
                num_frames=_FAR_FRAMES, num_inference_steps=2, guidance_scale=1.0,
                chunk_partition=list(_FAR_PARTITION), max_sequence_length=16,
                generator=generator(0))


CASES = [
    ZooCase(
        name="anyflow", pipeline_class="AnyFlowPipeline", folder="anyflow",
        build=_anyflow, call=_anyflow_call, fps=16, decode_pattern="final",
        notes=("Latents live as (B, T, C, H, W) during sampling; permuted to (B, C, T, H, W) "
               "(a non-contiguous view, made contiguous by the de-normalisation arithmetic) "
               "before the single vae.decode. FlowMapEulerDiscreteScheduler; CFG batched."),
    ),
    ZooCase(
        name="anyflow-far", pipeline_class="AnyFlowFARPipeline", folder="anyflow",
        build=_anyflow_far, call=_anyflow_far_call, fps=16, decode_pattern="final",
        notes=("Chunk-wise autoregressive generation (chunk_partition (1, 2, 2) latent frames; "
               "chunk 0 is the context chunk from the I2V first frame, vae.encode'd), but every "
               "chunk is written into one latent buffer and decoded ONCE after the rollout: no "
               "per-chunk decode. The conditioning image is a (1, 1, 3, H, W) tensor in [0, 1]."),
    ),
]
