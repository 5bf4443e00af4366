"""Zoo cases for diffusers' ``ltx2`` folder: ``LTX2Pipeline`` (text to video + audio) and
``LTX2ImageToVideoPipeline``.

Components, all tiny and seeded (``seed + k``):

* ``vae``: ``AutoencoderKLLTX2Video`` in the released layout (patch 4, encoder down blocks
  spatial / temporal / spatiotemporal / spatiotemporal, three spatiotemporal decoder upsamplers:
  x8 time, x32 space), 8 latent channels, ``decoder_causal=False`` like the checkpoints, no
  timestep conditioning / noise injection (LTX-2 decoders have none).
* ``audio_vae``: ``AutoencoderKLLTX2Audio`` with ``ch_mult=(1, 2, 4)`` (the real x4 in time and
  in mel bins), 2 latent channels over 8 mel bins; ``base_channels`` must equal latent channels
  x latent mel bins (4), the size of its ``latents_mean`` / ``latents_std`` buffers that the
  pipeline applies to the packed ``[B, L, C * M]`` audio latents. ``sample_rate=16000``,
  ``mel_hop_length=160`` as released: 100 mel frames / 25 audio latents per second.
* ``vocoder``: ``LTX2Vocoder`` with a x16 upsampling (4 x 4) instead of the released x240, so its
  ``output_sampling_rate`` is 100 mel frames/s x 16 = 1600 Hz (consistent, just low).
* ``text_encoder``: a real ``Gemma3ForConditionalGeneration`` from a ``Gemma3Config`` (2-layer
  text model, hidden 32; a 1-layer SigLIP vision tower it never uses) over the byte-level tokenizer;
  the pipeline stacks all ``num_hidden_layers + 1`` hidden states, so ``connectors`` has
  ``text_proj_in_factor=3``.

Output: ``LTX2PipelineOutput(frames=..., audio=...)`` / ``(video, audio)`` with
``return_dict=False``. ``audio`` is a float32 ``torch.Tensor`` ``[B, 2, samples]`` (stereo
waveform, tanh-bounded) at ``pipe.vocoder.config.output_sampling_rate`` Hz (the docstring example
passes that to ``encode_video(..., audio_sample_rate=...)``); here ``[1, 2, 1104]`` for 17 frames
at 24 fps (18 audio latents -> 69 mel frames from the causal decoder -> x16 samples). It is produced
AFTER the video decode, from ``audio_vae.decode(audio_latents, return_dict=False)`` then
``vocoder(mel)``; ``output_type`` does not change it (always a tensor).

How the video decodes (``"final"``): one ``self.vae.decode(latents, timestep, return_dict=False)``
after the loop, ``timestep`` POSITIONAL (``None`` here: no timestep conditioning), then
``postprocess_video``. The image-to-video pipeline encodes the image with ``vae.encode`` first.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from vidmem.tiny import tiny_tokenizer

from . import ZooCase

_TEXT_HIDDEN = 32
_TEXT_LAYERS = 2


def _components(seed: int) -> dict:
    from diffusers import (AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video,
                           FlowMatchEulerDiscreteScheduler, LTX2VideoTransformer3DModel)
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig,
                              SiglipVisionConfig)

    torch.manual_seed(seed)
    vae = AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, True, True),
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        decoder_block_out_channels=(8, 16, 32), decoder_layers_per_block=(1, 1, 1, 1),
        decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, False, False, False),
        upsample_type=("spatiotemporal",) * 3, upsample_residual=(True, True, True),
        upsample_factor=(2, 2, 2), timestep_conditioning=False, patch_size=4, patch_size_t=1,
        encoder_causal=True, decoder_causal=False, spatial_compression_ratio=32,
        temporal_compression_ratio=8).eval()

    torch.manual_seed(seed + 1)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4, output_channels=2, ch_mult=(1, 2, 4), num_res_blocks=1,
        attn_resolutions=None, in_channels=2, resolution=32, latent_channels=2, norm_type="pixel",
        causality_axis="height", dropout=0.0, mid_block_add_attention=False, sample_rate=16000,
        mel_hop_length=160, is_causal=True, mel_bins=8).eval()

    torch.manual_seed(seed + 2)
    vocoder = LTX2Vocoder(
        in_channels=2 * 8, hidden_channels=16, out_channels=2, upsample_kernel_sizes=[8, 8],
        upsample_factors=[4, 4], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3]],
        leaky_relu_negative_slope=0.1, output_sampling_rate=100 * 16).eval()

    torch.manual_seed(seed + 3)
    text_encoder = Gemma3ForConditionalGeneration(Gemma3Config(
        text_config=Gemma3TextConfig(
            vocab_size=260, hidden_size=_TEXT_HIDDEN, intermediate_size=64,
            num_hidden_layers=_TEXT_LAYERS, num_attention_heads=2, num_key_value_heads=1,
            head_dim=16, max_position_embeddings=512, query_pre_attn_scalar=16,
            sliding_window=64, pad_token_id=0, eos_token_id=1, bos_token_id=2),
        vision_config=SiglipVisionConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            image_size=28, patch_size=14),
        mm_tokens_per_image=4, boi_token_index=256, eoi_token_index=257,
        image_token_index=258)).eval()

    torch.manual_seed(seed + 4)
    connectors = LTX2TextConnectors(
        caption_channels=_TEXT_HIDDEN, text_proj_in_factor=_TEXT_LAYERS + 1,
        video_connector_num_attention_heads=4, video_connector_attention_head_dim=8,
        video_connector_num_layers=1, video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4, audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1, audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32, rope_theta=10000.0, rope_double_precision=False,
        causal_temporal_positioning=False, rope_type="split").eval()

    torch.manual_seed(seed + 5)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2,
        attention_head_dim=8, cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4,
        audio_num_attention_heads=2, audio_attention_head_dim=4, audio_cross_attention_dim=8,
        num_layers=2, qk_norm="rms_norm_across_heads", caption_channels=_TEXT_HIDDEN,
        rope_double_precision=False, rope_type="split").eval()

    return dict(vae=vae, audio_vae=audio_vae, vocoder=vocoder, text_encoder=text_encoder,
                tokenizer=tiny_tokenizer(64), connectors=connectors, transformer=transformer,
                scheduler=FlowMatchEulerDiscreteScheduler())


def _t2v(seed: int):
    from diffusers import LTX2Pipeline

    pipe = LTX2Pipeline(**_components(seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _i2v(seed: int):
    from diffusers import LTX2ImageToVideoPipeline

    pipe = LTX2ImageToVideoPipeline(**_components(seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _call() -> dict:
    # CFG on (guidance 3) for video and audio; STG off (its default block 28 does not exist in a
    # 2-layer transformer) and modality isolation guidance off, to keep 2 forward passes a step.
    return dict(prompt="a robot dances and sings", negative_prompt="", height=64, width=64,
                num_frames=17, frame_rate=24.0, num_inference_steps=2, guidance_scale=3.0,
                audio_guidance_scale=3.0, stg_scale=0.0, audio_stg_scale=0.0, modality_scale=1.0,
                audio_modality_scale=1.0, spatio_temporal_guidance_blocks=None,
                max_sequence_length=32, generator=torch.Generator().manual_seed(0))


def _i2v_call() -> dict:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    # image_crf left at its default: the image is re-compressed with H.264 (PyAV / libx264, CRF 33
    # for Gemma 3 text encoders) before it is resized and VAE-encoded, as in training.
    return dict(_call(), image=image)


_NOTES = ("returns audio too: out.audio is a torch.Tensor [1, 2, 1104] (stereo waveform) at "
          "pipe.vocoder.config.output_sampling_rate = 1600 Hz, decoded after the video by "
          "audio_vae.decode + vocoder; video: one vae.decode(latents, None) (timestep positional).")

CASES = [
    ZooCase(name="ltx2", pipeline_class="LTX2Pipeline", folder="ltx2", build=_t2v, call=_call,
            fps=24, decode_pattern="final", notes=_NOTES),
    ZooCase(name="ltx2-i2v", pipeline_class="LTX2ImageToVideoPipeline", folder="ltx2",
            build=_i2v, call=_i2v_call, fps=24, decode_pattern="final",
            notes=_NOTES + " The image is H.264 re-compressed (default CRF 33, PyAV) then "
                                  "VAE-encoded into the first latent frame."),
]
