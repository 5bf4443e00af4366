"""Tiny builds of the ``diffusers/pipelines/motif_video`` pipelines: ``MotifVideoPipeline`` (T2V)
and ``MotifVideoImage2VideoPipeline`` (first-frame I2V). Wan 2.1 VAE (latents normalized with the
VAE's ``latents_mean`` / ``latents_std``), a tiny ``T5Gemma2Encoder`` (Gemma-style text encoder
with a SigLIP vision tower, which the I2V pipeline also uses as its image encoder) over the byte
tokenizer, one final ``vae.decode``.

Not built offline: nothing.
"""

from __future__ import annotations

from typing import Any

import torch

from vidmem.tiny import tiny_tokenizer, tiny_wan_vae

from . import ZooCase
from .hunyuan_zoo import generator, rand_image

_FRAMES, _H, _W = 9, 32, 32
#: the SigLIP tower: 16x16 pixels in 4x4 patches, pooled to 4 multimodal tokens.
_VISION_SIZE, _VISION_PATCH = 16, 4


def t5gemma2_encoder(seed: int, vocab_size: int = 262):
    """A one-layer ``T5Gemma2Encoder`` (text + tiny SigLIP vision tower). The image token ids
    (259..261) lie above the byte tokenizer's 259 ids, so no prompt produces them."""
    from transformers import (SiglipVisionConfig, T5Gemma2Encoder, T5Gemma2EncoderConfig,
                              T5Gemma2TextConfig)

    text_config = T5Gemma2TextConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        head_dim=16, intermediate_size=64, vocab_size=vocab_size, max_position_embeddings=512,
        dropout_rate=0.0, pad_token_id=0, bos_token_id=0, eos_token_id=1)
    vision_config = SiglipVisionConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=16, image_size=_VISION_SIZE,
                                       patch_size=_VISION_PATCH, num_channels=3)
    torch.manual_seed(seed)
    return T5Gemma2Encoder(T5Gemma2EncoderConfig(
        text_config=text_config, vision_config=vision_config, mm_tokens_per_image=4,
        boi_token_index=vocab_size - 3, eoi_token_index=vocab_size - 2,
        image_token_index=vocab_size - 1)).eval()


def _motif(seed: int, image_to_video: bool):
    from diffusers import (ClassifierFreeGuidance, FlowMatchEulerDiscreteScheduler,
                           MotifVideoImage2VideoPipeline, MotifVideoPipeline)
    from diffusers.models.transformers.transformer_motif_video import (
        MotifVideoTransformer3DModel)
    from transformers import SiglipImageProcessor

    vae = tiny_wan_vae(seed)
    text_encoder = t5gemma2_encoder(seed + 1)
    torch.manual_seed(seed + 2)
    transformer = MotifVideoTransformer3DModel(
        in_channels=2 * 16 + 1, out_channels=16, num_attention_heads=2, attention_head_dim=12,
        num_layers=1, num_single_layers=1, mlp_ratio=4.0, patch_size=2, patch_size_t=1,
        qk_norm="rms_norm", text_embed_dim=32, image_embed_dim=8 if image_to_video else None,
        rope_axes_dim=(4, 4, 4)).eval()
    components = dict(scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), vae=vae,
                      text_encoder=text_encoder, tokenizer=tiny_tokenizer(512),
                      transformer=transformer,
                      guider=ClassifierFreeGuidance(guidance_scale=5.0))
    if image_to_video:
        return MotifVideoImage2VideoPipeline(
            **components, feature_extractor=SiglipImageProcessor(
                image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
                size={"height": _VISION_SIZE, "width": _VISION_SIZE}))
    return MotifVideoPipeline(**components)


def _t2v_call() -> dict[str, Any]:
    return dict(prompt="A woman with long brown hair smiles", negative_prompt="blurry, jittery",
                height=_H, width=_W, num_frames=_FRAMES, num_inference_steps=2,
                max_sequence_length=64, generator=generator(0))


def _i2v_call() -> dict[str, Any]:
    return dict(image=rand_image(_H, _W, 51), **_t2v_call())


CASES = [
    ZooCase(
        name="motif-video", pipeline_class="MotifVideoPipeline", folder="motif_video",
        build=lambda seed: _motif(seed, False), call=_t2v_call, fps=24, decode_pattern="final",
        notes="one final vae.decode of the de-normalized latents (latents * latents_std + "
              "latents_mean); vae_batch_size only splits the batch dimension (never frames)."),
    ZooCase(
        name="motif-video-i2v", pipeline_class="MotifVideoImage2VideoPipeline",
        folder="motif_video", build=lambda seed: _motif(seed, True), call=_i2v_call, fps=24,
        decode_pattern="final",
        notes="the image embedding comes from text_encoder.vision_tower (T5Gemma2's SigLIP) "
              "through feature_extractor; one final vae.decode, as in T2V."),
]
