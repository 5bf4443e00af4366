"""EasyAnimate (diffusers folder ``easyanimate``): ``EasyAnimatePipeline``, text-to-video.

A tiny Magvit VAE (``AutoencoderKLMagvit``: x4 time, x8 space), a one-layer
``EasyAnimateTransformer3DModel`` (patch 2) and a two-layer ``Qwen2VLForConditionalGeneration``
built from a ``Qwen2VLConfig`` (the text encoder of EasyAnimate V5.1; the pipeline reads
``hidden_states[-2]``) over the byte tokenizer, with a chat template that flattens the
``[{"type": "text", "text": ...}]`` messages the pipeline builds.
"""

from __future__ import annotations

import torch

from vidmem.tiny import tiny_tokenizer

from . import ZooCase

#: the pipeline calls ``tokenizer.apply_chat_template([message], add_generation_prompt=True)``
#: with list-of-parts contents.
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{% for c in m['content'] %}"
                 "{{ c['text'] }}{% endfor %}{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def tiny_qwen2vl(seed: int, hidden: int = 16):
    """A two-layer Qwen2-VL (text tower + a one-block vision tower) over the byte tokenizer."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    torch.manual_seed(seed)
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=260, hidden_size=hidden, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=512, pad_token_id=0, bos_token_id=0,
                         eos_token_id=1,
                         rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
        vision_config=dict(depth=1, embed_dim=16, hidden_size=hidden, num_heads=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_chans=3),
        vocab_size=260, image_token_id=258, video_token_id=259, vision_start_token_id=257,
        vision_end_token_id=256)
    return Qwen2VLForConditionalGeneration(config).eval()


def _build(seed: int):
    from diffusers import (AutoencoderKLMagvit, EasyAnimatePipeline,
                           EasyAnimateTransformer3DModel, FlowMatchEulerDiscreteScheduler)

    torch.manual_seed(seed)
    vae = AutoencoderKLMagvit(
        in_channels=3, out_channels=3,
        down_block_types=("SpatialDownBlock3D",) + ("SpatialTemporalDownBlock3D",) * 3,
        up_block_types=("SpatialUpBlock3D",) + ("SpatialTemporalUpBlock3D",) * 3,
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1,
        norm_num_groups=2, spatial_group_norm=False).eval()
    text_encoder = tiny_qwen2vl(seed + 1)
    tokenizer = tiny_tokenizer(256)
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed + 2)
    transformer = EasyAnimateTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
        time_embed_dim=2, text_embed_dim=16, num_layers=1, sample_width=16, sample_height=16,
        patch_size=2).eval()
    pipe = EasyAnimatePipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                               transformer=transformer,
                               scheduler=FlowMatchEulerDiscreteScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _call() -> dict:
    # negative_prompt is required with guidance (None raises in encode_prompt)
    return dict(prompt="a tiny boat", negative_prompt="", num_frames=9, height=64, width=64,
                num_inference_steps=2, generator=torch.Generator().manual_seed(0))


CASES = [
    ZooCase("easyanimate", "EasyAnimatePipeline", "easyanimate", _build, _call, fps=8,
            decode_pattern="final",
            notes="9 frames = 3 latent frames (x4 time), 64x64 = 8x8 latents. Latents are "
                  "divided by vae.config.scaling_factor, then one vae.decode(latents, "
                  "return_dict=False) after the loop; output [B, C, F, H, W]. Inside, the Magvit "
                  "VAE runs its decoder on latent frame 0 alone, then on each further latent "
                  "frame (num_latent_frames_batch_size=1), carrying causal-conv caches "
                  "(prev_features) between decoder calls; decode() clears them at the end. "
                  "negative_prompt must be a string (None fails with guidance)."),
]
