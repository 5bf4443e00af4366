"""Allegro (diffusers folder ``allegro``): ``AllegroPipeline``, text-to-video.

A tiny ``AutoencoderKLAllegro`` (x4 time, x8 space), a one-layer ``AllegroTransformer3DModel``
(patch 2) and the two-layer T5 of :mod:`vidmem.tiny` over the byte tokenizer.

The Allegro VAE only decodes tiled (``_decode`` raises ``NotImplementedError`` unless
``use_tiling``; the docstring example calls ``pipe.vae.enable_tiling()`` after loading), and
its tiles are fixed by the config: 24 pixel frames (6 latent) with a 16-frame stride, and
``sample_size`` x ``sample_size`` pixels with strides ``sample_size - 120`` (height) and
``sample_size - 80`` (width). Pixels no tile covers stay zero. So the smallest honest clip is
``sample_size`` = 128 pixels square (one spatial tile); 40 frames (10 latent frames) give two
overlapping temporal tiles, blended.

``use_tiling`` is a runtime flag that ``save_pretrained`` does not keep: a loaded pipeline
cannot decode until ``vae.enable_tiling()`` runs again. The zoo contract has no "after load"
hook, so :func:`_call` passes a ``callback_on_step_end`` that turns tiling on (idempotent, it
changes no tensors) on whichever pipeline runs the call, before its decode.
"""

from __future__ import annotations

import torch

from vidmem.tiny import _tiny_t5, tiny_tokenizer

from . import ZooCase


def _build(seed: int):
    from diffusers import (AllegroPipeline, AllegroTransformer3DModel, AutoencoderKLAllegro,
                           DDIMScheduler)

    torch.manual_seed(seed)
    vae = AutoencoderKLAllegro(
        in_channels=3, out_channels=3, down_block_types=("AllegroDownBlock3D",) * 4,
        up_block_types=("AllegroUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
        latent_channels=4, layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4,
        sample_size=128).eval()
    vae.enable_tiling()  # the only decode path the Allegro VAE has
    text_encoder = _tiny_t5(seed + 1)
    torch.manual_seed(seed + 2)
    transformer = AllegroTransformer3DModel(
        num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        num_layers=1, cross_attention_dim=24, sample_width=16, sample_height=16,
        sample_frames=10, caption_channels=32).eval()
    pipe = AllegroPipeline(tokenizer=tiny_tokenizer(64), text_encoder=text_encoder, vae=vae,
                           transformer=transformer, scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def enable_vae_tiling(pipe, step, timestep, callback_kwargs):
    """``callback_on_step_end``: the Allegro VAE decodes only tiled; a loaded pipeline forgets."""
    pipe.vae.enable_tiling()
    return callback_kwargs


def _call() -> dict:
    return dict(prompt="a tiny boat", negative_prompt="", num_frames=40, height=128, width=128,
                num_inference_steps=2, max_sequence_length=16, clean_caption=False,
                callback_on_step_end=enable_vae_tiling,
                generator=torch.Generator().manual_seed(0))


CASES = [
    ZooCase("allegro", "AllegroPipeline", "allegro", _build, _call, fps=15,
            decode_pattern="final",
            notes="40 frames (even: ceil(40/4) = 10 latent frames; odd counts get "
                  "(n-1)/4 + 1) at 128x128. One vae.decode(latents).sample after the loop "
                  "(latents / scaling_factor), inside which the VAE's tiled_decode runs its "
                  "decoder on fixed 6-latent-frame x sample_size tiles (here 2 temporal tiles, "
                  "stride 4 latent frames) and blends them. Layout: vae.decode returns "
                  "[B, F, C, H, W] (tiled_decode permutes); decode_latents permutes back to "
                  "[B, C, F, H, W] and the pipeline trims video[:, :, :num_frames, :height, "
                  ":width] before postprocess_video. A loaded pipeline needs "
                  "vae.enable_tiling(): call() passes a callback_on_step_end that does it."),
]
