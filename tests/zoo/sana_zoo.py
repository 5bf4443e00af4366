"""Tiny builds of the SANA-Video pipelines (``diffusers/pipelines/sana_video``):
``SanaVideoPipeline`` (T2V) and ``SanaImageToVideoPipeline`` (TI2V: the first latent frame is
the encoded image, kept clean with a zero timestep). SANA-Video 2B 480p ships the Wan 2.1 VAE
(``AutoencoderKLWan``) and a Gemma 2 text encoder; both are built small here, the Gemma tokenizer
replaced by the byte-level one."""

from __future__ import annotations

from typing import Any

import torch

from vidmem.tiny import tiny_tokenizer

from . import ZooCase
from .wan_zoo import generator, rand_image, wan_vae

_FRAMES, _H, _W = 9, 32, 32


def _gemma2(seed: int):
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(seed)
    return Gemma2Model(Gemma2Config(
        vocab_size=260, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
        pad_token_id=0, eos_token_id=1, bos_token_id=0, attn_implementation="eager")).eval()


def _build(cls_name: str):
    def build(seed: int):
        import diffusers
        from diffusers import DPMSolverMultistepScheduler, SanaVideoTransformer3DModel

        vae = wan_vae(seed)
        text_encoder = _gemma2(seed + 1)
        torch.manual_seed(seed + 2)
        transformer = SanaVideoTransformer3DModel(
            in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=12,
            num_layers=2, num_cross_attention_heads=2, cross_attention_head_dim=12,
            cross_attention_dim=24, caption_channels=16, mlp_ratio=2.5, dropout=0.0,
            attention_bias=False, sample_size=8, patch_size=(1, 2, 2),
            norm_elementwise_affine=False, norm_eps=1e-6, qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32).eval()
        scheduler = DPMSolverMultistepScheduler(prediction_type="flow_prediction",
                                                use_flow_sigmas=True, flow_shift=8.0)
        pipe = getattr(diffusers, cls_name)(tokenizer=tiny_tokenizer(300),
                                            text_encoder=text_encoder, vae=vae,
                                            transformer=transformer, scheduler=scheduler)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return build


def _t2v_call() -> dict[str, Any]:
    return dict(prompt="a young man in a forest, motion score: 30.", negative_prompt="jitter",
                height=_H, width=_W, frames=_FRAMES, num_inference_steps=2, guidance_scale=6.0,
                max_sequence_length=16, complex_human_instruction=[],
                use_resolution_binning=False, generator=generator(0))


def _i2v_call() -> dict[str, Any]:
    return dict(image=rand_image(_H, _W, 21), **_t2v_call())


_NOTES = ("The frame count argument is `frames`, not `num_frames`. use_resolution_binning=False "
          "(with it on, height/width snap to the 480p/720p aspect bins and the DECODED tensor is "
          "resize_and_crop_tensor'ed back to the asked size before postprocess_video). "
          "complex_human_instruction=[] (the default prepends a ~1.5k-character instruction to "
          "the prompt). vae.decode is wrapped in try/except OutOfMemoryError that only warns.")

CASES = [
    ZooCase(name="sana-video", pipeline_class="SanaVideoPipeline", folder="sana_video",
            build=_build("SanaVideoPipeline"), call=_t2v_call, fps=16, decode_pattern="final",
            notes=_NOTES),
    ZooCase(name="sana-video-i2v", pipeline_class="SanaImageToVideoPipeline",
            folder="sana_video", build=_build("SanaImageToVideoPipeline"), call=_i2v_call,
            fps=16, decode_pattern="final",
            notes=_NOTES + " I2V: the image's latent is frame 0 (zero timestep), decoded with "
                           "the rest in the single final decode."),
]
