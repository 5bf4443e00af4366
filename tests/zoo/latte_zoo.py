"""Latte (diffusers folder ``latte``): ``LattePipeline``; and ConsisID (folder ``consisid``):
``ConsisIDPipeline``, identity-preserving image-to-video.

Latte: a tiny image ``AutoencoderKL`` (x8 space, no time axis: every frame is its own latent
frame), a one-layer ``LatteTransformer3DModel`` (learned-sigma output, 8 channels; temporal
position embedding sized by ``video_length``) and the tiny T5 of :mod:`vidmem.tiny`.

ConsisID: the CogVideoX layout (``AutoencoderKLCogVideoX``, x4 time, x8 space) with a
``ConsisIDTransformer3DModel`` that has the face modules (``is_train_face=True``: the local
facial extractor and the perceiver cross-attentions). Its face inputs are not made by the
pipeline: ``id_cond`` (the antelopev2 ArcFace embedding concatenated with an EVA-CLIP one,
1280 wide in the real model) and ``id_vit_hidden`` (EVA02-CLIP's intermediate hidden states,
5 tensors of 577 x 1024) come from ``consisid_utils.process_face_embeddings_infer``, which needs
insightface, facexlib and the EVA-CLIP weights from the hub. The pipeline class itself takes
them as plain tensors, so the case builds it offline and passes seeded random tensors of the
shapes its tiny extractor expects (``id_cond`` 1 x 8, ``id_vit_hidden`` 2 tensors of 1 x 5 x 8).
What is not exercised offline is only that pre-processing helper (and ``kps_cond``, used
when ``is_kps=True``; the released checkpoint has ``is_kps=False``).

Not built offline
-----------------
Nothing is impossible here, but ``ConsisIDPipeline`` needs OpenCV: diffusers exports it only
when ``cv2`` imports (otherwise a dummy class that raises ``ImportError`` on construction), and
OpenCV is not a vidmem dependency. The ``consisid`` case is listed only where ``cv2`` imports
(``pip install opencv-python-headless``; checked with 4.14). The face-analysis models of
``consisid_utils`` (insightface antelopev2, facexlib's detector and parser, EVA02-CLIP-L) are
hub-only weights with no config class to build them from, so the case feeds the transformer's
face inputs directly instead (above).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch
from PIL import Image

from vidmem.tiny import _tiny_t5, tiny_tokenizer

from . import ZooCase

#: Latte's clip: 8 frames decoded 3 at a time -> 3 vae.decode calls (3, 3, 2 frames).
LATTE_FRAMES, LATTE_CHUNK = 8, 3


def _latte(seed: int):
    from diffusers import AutoencoderKL, DDIMScheduler, LattePipeline, LatteTransformer3DModel

    torch.manual_seed(seed)
    vae = AutoencoderKL(block_out_channels=(8, 8, 8, 8), in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4,
                        norm_num_groups=4, layers_per_block=1).eval()
    text_encoder = _tiny_t5(seed + 1)
    torch.manual_seed(seed + 2)
    transformer = LatteTransformer3DModel(
        sample_size=8, num_layers=1, patch_size=2, attention_head_dim=8, num_attention_heads=3,
        caption_channels=32, in_channels=4, cross_attention_dim=24, out_channels=8,
        attention_bias=True, activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
        norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6,
        video_length=LATTE_FRAMES).eval()
    pipe = LattePipeline(tokenizer=tiny_tokenizer(64), text_encoder=text_encoder, vae=vae,
                         transformer=transformer, scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _latte_call() -> dict:
    return dict(prompt="a tiny boat", negative_prompt="", video_length=LATTE_FRAMES, height=64,
                width=64, num_inference_steps=2, decode_chunk_size=LATTE_CHUNK,
                clean_caption=False, generator=torch.Generator().manual_seed(0))


def _consisid(seed: int):
    from diffusers import (AutoencoderKLCogVideoX, ConsisIDPipeline, ConsisIDTransformer3DModel,
                           DDIMScheduler)

    torch.manual_seed(seed)
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
        latent_channels=4, layers_per_block=1, norm_num_groups=2,
        temporal_compression_ratio=4).eval()
    text_encoder = _tiny_t5(seed + 1)
    torch.manual_seed(seed + 2)
    transformer = ConsisIDTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=4,
        time_embed_dim=2, text_embed_dim=32, num_layers=2, sample_width=8, sample_height=8,
        sample_frames=9, patch_size=2, temporal_compression_ratio=4, max_text_seq_length=16,
        use_rotary_positional_embeddings=True, use_learned_positional_embeddings=False,
        is_train_face=True, is_kps=False, cross_attn_interval=1, cross_attn_dim_head=8,
        cross_attn_num_heads=2, LFE_id_dim=8, LFE_vit_dim=8, LFE_depth=2, LFE_dim_head=4,
        LFE_num_heads=2, LFE_num_id_token=2, LFE_num_querie=4,
        LFE_output_dim=21,  # = int(inner_dim * 2 / 3), the perceiver cross-attention's kv width
        LFE_ff_mult=1, LFE_num_scale=2).eval()
    pipe = ConsisIDPipeline(tokenizer=tiny_tokenizer(16), text_encoder=text_encoder, vae=vae,
                            transformer=transformer, scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _consisid_call() -> dict:
    rng = np.random.RandomState(0)
    image = Image.fromarray(rng.randint(0, 255, (64, 64, 3), np.uint8))
    faces = torch.Generator().manual_seed(1)
    id_cond = torch.randn(1, 8, generator=faces)
    id_vit_hidden = [torch.randn(1, 5, 8, generator=faces) for _ in range(2)]
    return dict(image=image, prompt="a tiny boat", negative_prompt="", num_frames=9, height=64,
                width=64, num_inference_steps=2, max_sequence_length=16, id_cond=id_cond,
                id_vit_hidden=id_vit_hidden, generator=torch.Generator().manual_seed(0))


LATTE = ZooCase(
    "latte", "LattePipeline", "latte", _latte, _latte_call, fps=10,
    decode_pattern="chunks",
    notes=f"the frame count is video_length (no num_frames argument). decode_latents "
          f"flattens latents [B, C, F, h, w] -> [B*F, C, h, w], divides by "
          f"scaling_factor and calls vae.decode(chunk).sample for every "
          f"decode_chunk_size slice of the flattened batch*frames axis (here "
          f"{LATTE_FRAMES} frames by {LATTE_CHUNK}: 3 calls of 3, 3, 2; a chunk can "
          f"straddle two videos when batch > 1), then reshapes back to [B, C, F, H, W] "
          f"and casts to float32. The example exports a GIF with export_to_gif's "
          f"default 10 fps.",
)

CONSISID = ZooCase(
    "consisid", "ConsisIDPipeline", "consisid", _consisid, _consisid_call, fps=8,
    decode_pattern="final",
    notes="9 frames = 3 latent frames. The first frame is VAE-encoded before the loop "
          "(vae.encode, sampled with the generator). decode_latents (copied from "
          "CogVideoX) permutes [B, F, C, h, w] -> [B, C, F, h, w], divides by "
          "vae_scaling_factor_image and calls vae.decode(latents).sample once. Face "
          "inputs (id_cond, id_vit_hidden) are seeded random tensors: the real ones come "
          "from hub-only face models (see the module docstring).",
)

#: ConsisID only where OpenCV imports (diffusers gates the class on it).
CASES = [LATTE] + ([CONSISID] if importlib.util.find_spec("cv2") is not None else [])
