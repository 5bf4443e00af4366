"""CogVideoX-Fun control (diffusers folder ``cogvideo``): ``CogVideoXFunControlPipeline``.

The CogVideoX layout of :mod:`vidmem.tiny` (``AutoencoderKLCogVideoX``, x4 time, x8 space; the
tiny T5 over the byte tokenizer) with a transformer of 2 x latent channels in: the noisy latents
concatenated with the VAE-encoded control video. The control video is a list of seeded random
PIL frames; its length sets the frame count (the pipeline has no ``num_frames`` argument).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from vidmem.tiny import _tiny_t5, tiny_tokenizer

from . import ZooCase

FRAMES, HEIGHT, WIDTH = 9, 64, 64


def _build(seed: int):
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler,
                           CogVideoXFunControlPipeline, CogVideoXTransformer3DModel)

    torch.manual_seed(seed)
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=2,
        down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8), temporal_compression_ratio=4).eval()
    text_encoder = _tiny_t5(seed + 1)
    torch.manual_seed(seed + 2)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=4,
        time_embed_dim=2, text_embed_dim=32, num_layers=1, sample_width=8, sample_height=8,
        sample_frames=FRAMES, patch_size=2, temporal_compression_ratio=4, max_text_seq_length=16,
        use_rotary_positional_embeddings=True).eval()
    pipe = CogVideoXFunControlPipeline(tokenizer=tiny_tokenizer(16), text_encoder=text_encoder,
                                       vae=vae, transformer=transformer,
                                       scheduler=CogVideoXDDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def control_video(frames: int = FRAMES, height: int = HEIGHT, width: int = WIDTH,
                  seed: int = 0) -> list[Image.Image]:
    """Seeded random RGB frames standing in for a pose / depth / edge control clip."""
    rng = np.random.RandomState(seed)
    return [Image.fromarray(rng.randint(0, 255, (height, width, 3), np.uint8))
            for _ in range(frames)]


def _call() -> dict:
    return dict(prompt="a tiny boat", negative_prompt="", control_video=control_video(),
                height=HEIGHT, width=WIDTH, num_inference_steps=2, max_sequence_length=16,
                generator=torch.Generator().manual_seed(0))


CASES = [
    ZooCase("cogvideox-fun-control", "CogVideoXFunControlPipeline", "cogvideo", _build, _call,
            fps=8, decode_pattern="final",
            notes="frames = len(control_video) = 9 -> 3 latent frames. The control video is "
                  "VAE-encoded before the loop (vae.encode(...).latent_dist.mode(), no "
                  "generator) and concatenated to the latents on the channel axis. "
                  "decode_latents permutes [B, F, C, h, w] -> [B, C, F, h, w], divides by "
                  "vae_scaling_factor_image and calls vae.decode(latents).sample once."),
]
