"""Tiny builds of the SkyReels-V2 diffusion-forcing pipelines (``diffusers/pipelines/skyreels_v2``),
configured for *long video* generation: ``num_frames`` (17) above ``base_num_frames`` (9) with
``overlap_history`` set, so the denoising runs in several overlapping latent chunks.

diffusers' implementation keeps every chunk in LATENT space (``accumulated_latents``: the first
chunk whole, later chunks without their ``overlap_history`` latent frames) and decodes ONCE after
the last chunk, so the decode pattern is ``"final"`` although the generation is chunked.
"""

from __future__ import annotations

from typing import Any

import torch

from vidmem.tiny import tiny_tokenizer

from . import ZooCase
from .wan_zoo import generator, rand_image, umt5, wan_vae

_FRAMES, _BASE, _OVERLAP, _H, _W = 17, 9, 5, 32, 32


def _scheduler(flow_shift: float):
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                   flow_shift=flow_shift, num_train_timesteps=1000)


def _build(cls_name: str, flow_shift: float):
    def build(seed: int):
        import diffusers
        from diffusers import SkyReelsV2Transformer3DModel

        vae = wan_vae(seed)
        text_encoder = umt5(seed + 1)
        torch.manual_seed(seed + 2)
        transformer = SkyReelsV2Transformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
            out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2,
            cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32).eval()
        pipe = getattr(diffusers, cls_name)(
            tokenizer=tiny_tokenizer(), text_encoder=text_encoder, transformer=transformer,
            vae=vae, scheduler=_scheduler(flow_shift))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return build


def _long_video_kwargs() -> dict[str, Any]:
    # 17 frames = 5 latent frames; chunks of 9 frames = 3 latent frames, 5 frames = 2 latent
    # frames of history: chunk 0 makes latents 0-2, chunk 1 re-denoises 1-3 from 1-2, chunk 2
    # 2-4 from 2-3: three chunks, each overlapping the previous by 2 latent frames.
    return dict(num_frames=_FRAMES, base_num_frames=_BASE, overlap_history=_OVERLAP,
                addnoise_condition=0, ar_step=0, height=_H, width=_W, num_inference_steps=2,
                max_sequence_length=16, negative_prompt="blurry", generator=generator(0))


def _t2v_call() -> dict[str, Any]:
    return dict(prompt="a tiny cat baking a cake", guidance_scale=6.0, **_long_video_kwargs())


def _i2v_call() -> dict[str, Any]:
    return dict(image=rand_image(_H, _W, 7), prompt="a tiny cat baking a cake",
                guidance_scale=5.0, **_long_video_kwargs())


_NOTES = ("Long-video mode: num_frames 17 > base_num_frames 9 with overlap_history 5 -> 3 "
          "overlapping latent chunks (3 latent frames each, 2 of history). The chunks are "
          "accumulated as latents (overlap dropped) and decoded by ONE vae.decode of all 5 "
          "latent frames after the last chunk; no post-decode trimming. addnoise_condition is "
          "left at 0: above 0 it noises the history with torch.randn_like (the global RNG, not "
          "the call's generator), so two calls would differ. ar_step 0 (synchronous).")

CASES = [
    ZooCase(
        name="skyreels-v2-df", pipeline_class="SkyReelsV2DiffusionForcingPipeline",
        folder="skyreels_v2", build=_build("SkyReelsV2DiffusionForcingPipeline", 8.0),
        call=_t2v_call, fps=24, decode_pattern="final", notes=_NOTES),
    ZooCase(
        name="skyreels-v2-df-i2v", pipeline_class="SkyReelsV2DiffusionForcingImageToVideoPipeline",
        folder="skyreels_v2", build=_build("SkyReelsV2DiffusionForcingImageToVideoPipeline", 5.0),
        call=_i2v_call, fps=24, decode_pattern="final", notes=_NOTES),
]
