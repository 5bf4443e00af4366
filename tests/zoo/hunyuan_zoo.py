"""Tiny builds of the ``diffusers/pipelines/hunyuan_video`` and ``hunyuan_video1_5`` pipelines not
covered by :mod:`vidmem.tiny`:

* ``HunyuanVideoImageToVideoPipeline`` in both released layouts: ``latent_concat`` (the
  HunyuanVideo-I2V-33ch checkpoint: image latents + mask concatenated on channels; the pipeline
  drops the first 4 decoded frames) and ``token_replace`` (HunyuanVideo-I2V: the first latent frame
  is the image, nothing trimmed). The text encoder is a tiny ``LlavaForConditionalGeneration``
  (CLIP vision tower + Llama) over the byte tokenizer with the Llama-3 header tokens and ``<image>``
  added as special tokens, so the pipeline's own prompt cropping (``<|end_header_id|>`` lookup,
  image-token expansion) runs as it does with the real tokenizer.
* ``HunyuanVideoFramepackPipeline`` in both sampling types (``inverted_anti_drifting``, the
  default, and ``vanilla``, FramePack-F1), with ``latent_window_size=2`` so a 9-frame request
  takes 2 sections: one ``vae.decode`` per section inside the section loop, blended with
  ``_soft_append`` (in-loop decode).
* ``HunyuanVideo15ImageToVideoPipeline``: Qwen2.5-VL text model (chat template), ByT5 glyph
  encoder, SigLIP image encoder, the fully causal 1.5 VAE; one final decode.

Not built offline: nothing; every class named above has a case.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from vidmem.tiny import tiny_tokenizer

from . import ZooCase

# --- shared helpers -------------------------------------------------------------------------


def rand_image(height: int, width: int, seed: int) -> Image.Image:
    """A random RGB PIL image from a fixed numpy seed."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hunyuan_vae(seed: int):
    """A small ``AutoencoderKLHunyuanVideo`` (x4 time, x8 space, 4 latent channels)."""
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(seed)
    return AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
        spatial_compression_ratio=8, temporal_compression_ratio=4).eval()


def clip_text(seed: int, hidden: int = 8):
    """A two-layer ``CLIPTextModel`` over the byte tokenizer (the pooled prompt embedding)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=260, hidden_size=hidden, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, pad_token_id=0, bos_token_id=0,
        eos_token_id=1, projection_dim=hidden)).eval()


#: the Llama-3 chat header tokens (and Llava's ``<image>``) added to the byte tokenizer, so the
#: prompt templates tokenize with the structure the pipelines' cropping code expects.
LLAMA_SPECIALS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "assistant",
                  "<image>")


def llama_tokenizer(model_max_length: int = 512):
    """The byte tokenizer plus :data:`LLAMA_SPECIALS` (ids 259..263)."""
    tok = tiny_tokenizer(model_max_length)
    tok.add_special_tokens({"additional_special_tokens": list(LLAMA_SPECIALS)})
    return tok


def _crop_start(tokenizer, template: str) -> int:
    """How many tokens come before the prompt in ``template`` (the templates' ``crop_start``)."""
    return len(tokenizer(template.split("{}")[0], add_special_tokens=False).input_ids)


# --- HunyuanVideoImageToVideoPipeline -------------------------------------------------------

_I2V_FRAMES, _I2V_H, _I2V_W = 9, 32, 32
#: the vision tower: 32x32 pixels in 8x8 patches -> 16 image features (+ CLS, dropped).
_VISION_SIZE, _VISION_PATCH = 32, 8
_IMAGE_EMB_LEN = (_VISION_SIZE // _VISION_PATCH) ** 2

_I2V_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\n<image>\nDescribe the video by the reference "
    "image.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


def _i2v_prompt_template() -> dict[str, Any]:
    tok = llama_tokenizer()
    before = tok(_I2V_TEMPLATE.split("<image>")[0], add_special_tokens=False).input_ids
    start = len(before)
    return {"template": _I2V_TEMPLATE, "crop_start": _crop_start(tok, _I2V_TEMPLATE),
            "image_emb_start": start, "image_emb_end": start + _IMAGE_EMB_LEN,
            "image_emb_len": _IMAGE_EMB_LEN}


def _llava(seed: int, tokenizer):
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration)

    image_token = tokenizer.convert_tokens_to_ids("<image>")
    text_config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=37,
                              num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                              max_position_embeddings=512, pad_token_id=0, bos_token_id=0,
                              eos_token_id=1)
    vision_config = CLIPVisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                                     num_attention_heads=2, image_size=_VISION_SIZE,
                                     patch_size=_VISION_PATCH, projection_dim=8)
    torch.manual_seed(seed)
    return LlavaForConditionalGeneration(LlavaConfig(
        vision_config=vision_config, text_config=text_config, image_token_index=image_token,
        pad_token_id=0, vision_feature_layer=-2, vision_feature_select_strategy="default",
    )).eval()


def _hunyuan_i2v(seed: int, condition: str):
    from diffusers import (FlowMatchEulerDiscreteScheduler, HunyuanVideoImageToVideoPipeline,
                           HunyuanVideoTransformer3DModel)
    from transformers import CLIPImageProcessor

    vae = hunyuan_vae(seed)
    tokenizer = llama_tokenizer()
    text_encoder = _llava(seed + 1, tokenizer)
    text_encoder_2 = clip_text(seed + 2)
    torch.manual_seed(seed + 3)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=2 * 4 + 1 if condition == "latent_concat" else 4, out_channels=4,
        num_attention_heads=2, attention_head_dim=10, num_layers=1, num_single_layers=1,
        num_refiner_layers=1, patch_size=1, patch_size_t=1,
        guidance_embeds=condition == "token_replace", text_embed_dim=16, pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4), image_condition_type=condition).eval()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": _VISION_SIZE}, crop_size={"height": _VISION_SIZE,
                                                         "width": _VISION_SIZE},
        do_center_crop=True, do_normalize=True, do_resize=True, resample=3,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711])
    return HunyuanVideoImageToVideoPipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=text_encoder_2,
        tokenizer_2=tiny_tokenizer(77), image_processor=image_processor)


def _hunyuan_i2v_call(condition: str) -> dict[str, Any]:
    return dict(image=rand_image(_I2V_H, _I2V_W, 11), prompt="a red fox runs in the snow",
                height=_I2V_H, width=_I2V_W, num_frames=_I2V_FRAMES, num_inference_steps=2,
                guidance_scale=1.0 if condition == "latent_concat" else 6.0,
                prompt_template=_i2v_prompt_template(), max_sequence_length=64,
                generator=generator(0))


# --- HunyuanVideoFramepackPipeline ----------------------------------------------------------

_FP_FRAMES, _FP_H, _FP_W, _FP_WINDOW = 9, 32, 32, 2

_FP_TEMPLATE = ("<|start_header_id|>system<|end_header_id|>\n\nDescribe the video.<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>")


def _framepack(seed: int):
    from diffusers import (FlowMatchEulerDiscreteScheduler, HunyuanVideoFramepackPipeline,
                           HunyuanVideoFramepackTransformer3DModel)
    from transformers import (LlamaConfig, LlamaModel, SiglipImageProcessor, SiglipVisionConfig,
                              SiglipVisionModel)

    vae = hunyuan_vae(seed)
    tokenizer = llama_tokenizer()
    torch.manual_seed(seed + 1)
    text_encoder = LlamaModel(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=37, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512, pad_token_id=0,
        bos_token_id=0, eos_token_id=1)).eval()
    text_encoder_2 = clip_text(seed + 2)
    torch.manual_seed(seed + 3)
    image_encoder = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        image_size=32, patch_size=8)).eval()
    torch.manual_seed(seed + 4)
    transformer = HunyuanVideoFramepackTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, patch_size=2, patch_size_t=1,
        guidance_embeds=True, text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4),
        image_condition_type=None, has_image_proj=True, image_proj_dim=16,
        has_clean_x_embedder=True).eval()
    feature_extractor = SiglipImageProcessor(size={"height": 32, "width": 32})
    return HunyuanVideoFramepackPipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=text_encoder_2,
        tokenizer_2=tiny_tokenizer(77), image_encoder=image_encoder,
        feature_extractor=feature_extractor)


def _framepack_call(sampling_type: str) -> dict[str, Any]:
    template = {"template": _FP_TEMPLATE, "crop_start": _crop_start(llama_tokenizer(),
                                                                     _FP_TEMPLATE)}
    return dict(image=rand_image(_FP_H, _FP_W, 21), prompt="a penguin dancing in the snow",
                height=_FP_H, width=_FP_W, num_frames=_FP_FRAMES,
                latent_window_size=_FP_WINDOW, num_inference_steps=2, guidance_scale=9.0,
                sampling_type=sampling_type, prompt_template=template, max_sequence_length=64,
                generator=generator(0))


# --- HunyuanVideo15ImageToVideoPipeline -----------------------------------------------------

_HY15_FRAMES, _HY15_SIZE = 9, 64


def _hunyuan15_i2v(seed: int):
    from diffusers import (AutoencoderKLHunyuanVideo15, ClassifierFreeGuidance,
                           FlowMatchEulerDiscreteScheduler, HunyuanVideo15ImageToVideoPipeline,
                           HunyuanVideo15Transformer3DModel)
    from transformers import (ByT5Tokenizer, Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel,
                              SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel,
                              T5Config, T5EncoderModel)

    torch.manual_seed(seed)
    vae = AutoencoderKLHunyuanVideo15(latent_channels=4, block_out_channels=(8,) * 5,
                                      layers_per_block=1).eval()
    torch.manual_seed(seed + 1)
    qwen = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(
        vocab_size=260, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=0, eos_token_id=1, pad_token_id=0,
        rope_scaling={"type": "default", "mrope_section": [1, 1, 2], "rope_type": "default"})).eval()
    tokenizer = tiny_tokenizer(1200)
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
                               "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    torch.manual_seed(seed + 2)
    byt5 = T5EncoderModel(T5Config(vocab_size=384, d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                   num_heads=2, relative_attention_num_buckets=8,
                                   feed_forward_proj="gated-gelu")).eval()
    torch.manual_seed(seed + 3)
    image_encoder = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=12, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
        image_size=32, patch_size=8)).eval()
    torch.manual_seed(seed + 4)
    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=2 * 4 + 1, out_channels=4, num_attention_heads=2, attention_head_dim=8,
        num_layers=1, num_refiner_layers=1, text_embed_dim=16, text_embed_2_dim=16,
        image_embed_dim=12, rope_axes_dim=(2, 2, 4), target_size=_HY15_SIZE,
        task_type="i2v").eval()
    return HunyuanVideo15ImageToVideoPipeline(
        text_encoder=qwen, tokenizer=tokenizer, transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=byt5,
        tokenizer_2=ByT5Tokenizer(), guider=ClassifierFreeGuidance(guidance_scale=6.0),
        image_encoder=image_encoder,
        feature_extractor=SiglipImageProcessor(size={"height": 32, "width": 32}))


def _hunyuan15_i2v_call() -> dict[str, Any]:
    return dict(image=rand_image(_HY15_SIZE, _HY15_SIZE, 31), prompt="a white cat on a surfboard",
                num_frames=_HY15_FRAMES, num_inference_steps=2, generator=generator(0))


CASES = [
    ZooCase(
        name="hunyuan-i2v", pipeline_class="HunyuanVideoImageToVideoPipeline",
        folder="hunyuan_video", build=lambda seed: _hunyuan_i2v(seed, "latent_concat"),
        call=lambda: _hunyuan_i2v_call("latent_concat"), fps=15, decode_pattern="final",
        notes="latent_concat layout (HunyuanVideo-I2V-33ch): one final vae.decode of all 3 "
              "latent frames (9 pixel frames), then the pipeline slices video[:, :, 4:] before "
              "postprocess_video, so 5 frames come out."),
    ZooCase(
        name="hunyuan-i2v-token-replace", pipeline_class="HunyuanVideoImageToVideoPipeline",
        folder="hunyuan_video", build=lambda seed: _hunyuan_i2v(seed, "token_replace"),
        call=lambda: _hunyuan_i2v_call("token_replace"), fps=15, decode_pattern="final",
        notes="token_replace layout (HunyuanVideo-I2V): the first latent frame is the image's; "
              "one final vae.decode, no trimming (9 frames)."),
    ZooCase(
        name="hunyuan-framepack", pipeline_class="HunyuanVideoFramepackPipeline",
        folder="hunyuan_video", build=_framepack,
        call=lambda: _framepack_call("inverted_anti_drifting"), fps=30,
        decode_pattern="in-loop",
        notes="inverted anti-drifting sampling, latent_window_size=2: 2 sections generated "
              "back to front, one vae.decode per section inside the loop (2 then 5 latent "
              "frames), blended with _soft_append over 5 overlapping frames; 17 frames out "
              "for num_frames=9 (FramePack rounds up to whole sections)."),
    ZooCase(
        name="hunyuan-framepack-f1", pipeline_class="HunyuanVideoFramepackPipeline",
        folder="hunyuan_video", build=_framepack, call=lambda: _framepack_call("vanilla"),
        fps=30, decode_pattern="in-loop",
        notes="vanilla (FramePack-F1) sampling, latent_window_size=2: 2 sections front to back, "
              "one vae.decode per section inside the loop (3 then 4 latent frames), blended "
              "with _soft_append; 17 frames out for num_frames=9."),
    ZooCase(
        name="hunyuan15-i2v", pipeline_class="HunyuanVideo15ImageToVideoPipeline",
        folder="hunyuan_video1_5", build=_hunyuan15_i2v, call=_hunyuan15_i2v_call, fps=24,
        decode_pattern="final",
        notes="height / width come from the image and transformer.config.target_size (64: "
              "64x64); __call__ takes no height / width. One final vae.decode."),
]
