"""Tiny builds of the ``diffusers/pipelines/wan`` pipelines not covered by :mod:`vidmem.tiny`:
``WanAnimatePipeline`` (segment-wise generation, one ``vae.decode`` per segment) and
``WanVACEPipeline`` (one final decode).

The shared pieces (a small Wan 2.1 VAE, a UMT5 text encoder over the byte tokenizer, random PIL
clips) are reused by the other Wan-like zoo modules (SkyReels-V2, Lucy, AnyFlow).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from vidmem.tiny import tiny_tokenizer

from . import ZooCase


# --- shared helpers -------------------------------------------------------------------------


def wan_vae(seed: int):
    """A small ``AutoencoderKLWan`` (Wan 2.1 layout: x4 time, x8 space, 16 latent channels)."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True]).eval()


def umt5(seed: int, d_model: int = 32):
    """A two-layer UMT5 encoder over the byte tokenizer's 260 ids."""
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    return UMT5EncoderModel(UMT5Config(
        vocab_size=260, d_model=d_model, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0)).eval()


def rand_image(height: int, width: int, seed: int, mode: str = "RGB") -> Image.Image:
    """A random PIL image from a fixed numpy seed."""
    rng = np.random.default_rng(seed)
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8), mode="L")
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")


def rand_video(frames: int, height: int, width: int, seed: int,
               mode: str = "RGB") -> list[Image.Image]:
    """``frames`` random PIL images (seeds ``seed``, ``seed + 1``, ...)."""
    return [rand_image(height, width, seed + i, mode) for i in range(frames)]


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- WanAnimatePipeline -----------------------------------------------------------------------

_ANIM_FRAMES, _ANIM_H, _ANIM_W, _ANIM_FACE = 17, 32, 32, 16


def _wan_animate(seed: int):
    from diffusers import (FlowMatchEulerDiscreteScheduler, WanAnimatePipeline,
                           WanAnimateTransformer3DModel)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    vae = wan_vae(seed)
    text_encoder = umt5(seed + 1)
    torch.manual_seed(seed + 2)
    transformer = WanAnimateTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36,
        latent_channels=16, out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", image_dim=8, rope_max_seq_len=32,
        motion_encoder_channel_sizes={"4": 16, "8": 16, "16": 16},
        motion_encoder_size=_ANIM_FACE, motion_style_dim=8, motion_dim=4, motion_encoder_dim=16,
        face_encoder_hidden_dim=16, face_encoder_num_heads=2, inject_face_latents_blocks=2,
    ).eval()
    torch.manual_seed(seed + 3)
    image_encoder = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
        image_size=8, intermediate_size=16, patch_size=4)).eval()
    image_processor = CLIPImageProcessor(crop_size=8, size=8)
    pipe = WanAnimatePipeline(
        tokenizer=tiny_tokenizer(), text_encoder=text_encoder, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), image_processor=image_processor,
        image_encoder=image_encoder, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _wan_animate_call() -> dict[str, Any]:
    return dict(
        image=rand_image(_ANIM_H, _ANIM_W, 1),
        pose_video=rand_video(_ANIM_FRAMES, _ANIM_H, _ANIM_W, 100),
        face_video=rand_video(_ANIM_FRAMES, _ANIM_FACE, _ANIM_FACE, 200),
        prompt="a tiny dancing robot", height=_ANIM_H, width=_ANIM_W,
        # 17 pose frames, segments of 9 frames overlapping by 1: two segments (frames 0-8, 8-16)
        segment_frame_length=9, prev_segment_conditioning_frames=1, mode="animate",
        num_inference_steps=2, guidance_scale=1.0, max_sequence_length=16,
        generator=generator(0),
    )


# --- WanVACEPipeline --------------------------------------------------------------------------

_VACE_FRAMES, _VACE_H, _VACE_W = 9, 32, 32


def _wan_vace(seed: int):
    from diffusers import (FlowMatchEulerDiscreteScheduler, WanVACEPipeline,
                           WanVACETransformer3DModel)

    vae = wan_vae(seed)
    text_encoder = umt5(seed + 1)
    torch.manual_seed(seed + 2)
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
        out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32, num_layers=3,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
        vace_layers=[0, 2], vace_in_channels=96).eval()
    pipe = WanVACEPipeline(tokenizer=tiny_tokenizer(), text_encoder=text_encoder, vae=vae,
                           scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                           transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _wan_vace_call() -> dict[str, Any]:
    mask = [Image.new("L", (_VACE_W, _VACE_H), 0)] * 3 + \
        [Image.new("L", (_VACE_W, _VACE_H), 255)] * (_VACE_FRAMES - 3)
    return dict(
        video=rand_video(_VACE_FRAMES, _VACE_H, _VACE_W, 300), mask=mask,
        reference_images=[rand_image(_VACE_H, _VACE_W, 400)],
        prompt="a tiny dancing robot", negative_prompt="blurry", height=_VACE_H, width=_VACE_W,
        num_frames=_VACE_FRAMES, num_inference_steps=2, guidance_scale=5.0,
        max_sequence_length=16, generator=generator(0),
    )


CASES = [
    ZooCase(
        name="wan-animate", pipeline_class="WanAnimatePipeline", folder="wan",
        build=_wan_animate, call=_wan_animate_call, fps=30, decode_pattern="chunks",
        notes=("Generates in segments of segment_frame_length (9) pixel frames overlapping by "
               "prev_segment_conditioning_frames (1): 17 pose frames -> 2 segments, one "
               "vae.decode(latents[:, :, 1:]) per segment (the first latent frame is the "
               "reference image and is dropped BEFORE decode). The decoded pixels of a segment "
               "are re-encoded (vae.encode) to condition the next one; segments after the first "
               "drop their first prev_segment_conditioning_frames decoded frames, then all are "
               "concatenated and trimmed to len(pose_video) before postprocess_video."),
    ),
    ZooCase(
        name="wan-vace", pipeline_class="WanVACEPipeline", folder="wan",
        build=_wan_vace, call=_wan_vace_call, fps=16, decode_pattern="final",
        notes=("One reference image: its latent frame is sliced off the latents "
               "(latents[:, :, num_reference_images:]) before the single vae.decode, so the "
               "decoded clip has num_frames frames. CFG on (guidance_scale 5)."),
    ),
]
