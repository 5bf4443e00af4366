"""Tiny builds of the ``diffusers/pipelines/kandinsky5`` video pipelines: ``Kandinsky5T2VPipeline``
and ``Kandinsky5I2VPipeline`` (HunyuanVideo VAE, Qwen2.5-VL + CLIP text encoders, one final
``vae.decode`` of channels-last latents permuted to ``[B, C, T, H, W]``).

The text encoder is a real, tiny ``Qwen2_5_VLForConditionalGeneration`` (vision tower included),
built from configs in code.

Deviation: the ``tokenizer`` component is the byte tokenizer (``PreTrainedTokenizerFast``, with the
Qwen vision special tokens added), not a ``Qwen2VLProcessor``. In this environment a
``Qwen2VLProcessor`` cannot be constructed at all: its ``video_processor`` attribute must be a
``BaseVideoProcessor`` (``Qwen2VLVideoProcessor``), which needs torchvision, which is not
installed (and installing it would change other builds' image processors). The pipelines call
the processor with ``images=None, videos=None``, where a ``Qwen2VLProcessor`` only forwards the
text to its tokenizer, so the token ids follow the same path.

Not built offline: nothing else.
"""

from __future__ import annotations

from typing import Any

import torch

from vidmem.tiny import tiny_tokenizer

from . import ZooCase
from .hunyuan_zoo import clip_text, generator, hunyuan_vae, rand_image

#: the Qwen2-VL vision special tokens, added to the byte tokenizer (ids 259..262).
QWEN_VL_SPECIALS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")


def qwen_vl_tokenizer(model_max_length: int = 1024):
    tok = tiny_tokenizer(model_max_length)
    tok.add_special_tokens({"additional_special_tokens": list(QWEN_VL_SPECIALS)})
    return tok


def qwen25_vl(seed: int, tokenizer, hidden: int = 16):
    """A tiny ``Qwen2_5_VLForConditionalGeneration`` over ``tokenizer``'s ids."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in zip(
        ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"),
        QWEN_VL_SPECIALS)}
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=2048, pad_token_id=0, bos_token_id=0,
                         eos_token_id=1, rope_theta=1000000.0,
                         rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default",
                                       "type": "default"}),
        vision_config=dict(depth=2, hidden_size=16, intermediate_size=16, num_heads=2,
                           out_hidden_size=hidden, fullatt_block_indexes=[1]),
        **ids)
    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


_T2V_FRAMES, _I2V_FRAMES, _H, _W = 9, 17, 32, 32


def _randomize_modulations(transformer, seed: int) -> None:
    """Kandinsky 5 zero-initializes every ``Kandinsky5Modulation`` (adaLN) layer, which with
    random weights makes every gate zero and the transformer's output independent of its inputs
    (the prompt would not change a frame). Give them small seeded values, as trained weights
    have."""
    from diffusers.models.transformers.transformer_kandinsky import Kandinsky5Modulation

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in transformer.modules():
            if isinstance(module, Kandinsky5Modulation):
                for p in module.out_layer.parameters():
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def _kandinsky(seed: int, image_to_video: bool):
    from diffusers import (FlowMatchEulerDiscreteScheduler, Kandinsky5I2VPipeline,
                           Kandinsky5T2VPipeline, Kandinsky5Transformer3DModel)

    vae = hunyuan_vae(seed)
    tokenizer = qwen_vl_tokenizer()
    text_encoder = qwen25_vl(seed + 1, tokenizer)
    text_encoder_2 = clip_text(seed + 2, hidden=16)
    torch.manual_seed(seed + 3)
    transformer = Kandinsky5Transformer3DModel(
        in_visual_dim=4, in_text_dim=16, in_text_dim2=16, time_dim=16, out_visual_dim=4,
        patch_size=(1, 2, 2), model_dim=16, ff_dim=32, num_text_blocks=1, num_visual_blocks=2,
        axes_dims=(2, 2, 4), visual_cond=image_to_video, attention_type="regular").eval()
    _randomize_modulations(transformer, seed + 4)
    cls = Kandinsky5I2VPipeline if image_to_video else Kandinsky5T2VPipeline
    return cls(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
               text_encoder_2=text_encoder_2, tokenizer_2=tiny_tokenizer(77),
               scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0))


def _t2v_call() -> dict[str, Any]:
    return dict(prompt="A cat and a dog baking a cake together in a kitchen.", height=_H,
                width=_W, num_frames=_T2V_FRAMES, num_inference_steps=2, guidance_scale=5.0,
                max_sequence_length=1024, generator=generator(0))


def _i2v_call() -> dict[str, Any]:
    return dict(image=rand_image(_H, _W, 41), prompt="An astronaut floating in space",
                height=_H, width=_W, num_frames=_I2V_FRAMES, num_inference_steps=2,
                guidance_scale=5.0, max_sequence_length=1024, generator=generator(0))


_TOKENIZER_NOTE = ("tokenizer is the byte tokenizer, not a Qwen2VLProcessor (that needs "
                   "torchvision for its video processor; see the module docstring).")

CASES = [
    ZooCase(
        name="kandinsky5-t2v", pipeline_class="Kandinsky5T2VPipeline", folder="kandinsky5",
        build=lambda seed: _kandinsky(seed, False), call=_t2v_call, fps=24,
        decode_pattern="final",
        notes="latents are channels-last [B, T, H, W, C] during denoising; one final "
              "vae.decode(video).sample (no return_dict=False: a DecoderOutput) after a "
              "permute to [B, C, T, H, W]. " + _TOKENIZER_NOTE),
    ZooCase(
        name="kandinsky5-i2v", pipeline_class="Kandinsky5I2VPipeline", folder="kandinsky5",
        build=lambda seed: _kandinsky(seed, True), call=_i2v_call, fps=24,
        decode_pattern="final",
        notes="17 frames (5 latent frames): normalize_first_frame compares the first 4 latent "
              "frames with the following ones and gives NaN with fewer than 5. One final "
              "vae.decode(video).sample, as in T2V. " + _TOKENIZER_NOTE),
]
