"""A tiny build of ``LucyEditPipeline`` (``diffusers/pipelines/lucy``): video editing on the Wan 2.2
TI2V layout (patchified Wan 2.2 VAE with spatial factor 16, the source video's VAE latents
concatenated with the noise on the channel axis, per-token timesteps ``expand_timesteps``)."""

from __future__ import annotations

from typing import Any

import torch

from vidmem.tiny import tiny_tokenizer, tiny_wan_vae

from . import ZooCase
from .wan_zoo import generator, rand_video, umt5

_FRAMES, _H, _W = 9, 32, 32


def _lucy(seed: int):
    from diffusers import FlowMatchEulerDiscreteScheduler, LucyEditPipeline, WanTransformer3DModel

    vae = tiny_wan_vae(seed, patch_size=2)  # torch.manual_seed(seed) inside
    text_encoder = umt5(seed + 1)
    torch.manual_seed(seed + 2)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=32,
        out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32).eval()
    pipe = LucyEditPipeline(tokenizer=tiny_tokenizer(), text_encoder=text_encoder, vae=vae,
                            scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
                            transformer=transformer, expand_timesteps=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _lucy_call() -> dict[str, Any]:
    return dict(video=rand_video(_FRAMES, _H, _W, 500), prompt="make the apron a clown costume",
                negative_prompt="", height=_H, width=_W, num_frames=_FRAMES,
                num_inference_steps=2, guidance_scale=5.0, max_sequence_length=16,
                generator=generator(0))


CASES = [
    ZooCase(
        name="lucy-edit", pipeline_class="LucyEditPipeline", folder="lucy",
        build=_lucy, call=_lucy_call, fps=24, decode_pattern="final",
        notes=("Wan 2.2-layout VAE (patch_size 2, 12-channel patchified pixels, spatial x16): the "
               "decoded tensor comes out unpatchified to 3 channels. The input video is "
               "vae.encode'd (argmax) once per batch item before the loop; one vae.decode after. "
               "num_frames is ignored: the latent length follows len(video)."),
    ),
]
