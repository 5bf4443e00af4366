"""Zoo case for diffusers' ``helios`` folder: ``HeliosPipeline`` (autoregressive chunks with a
multi-term latent memory, a UMT5 text encoder, the Wan 2.1 VAE).

How it decodes (``"in-loop"``): after denoising each chunk of ``num_latent_frames_per_chunk``
latent frames, the pipeline decodes THAT chunk alone, inside the chunk loop:
``self.vae.decode(chunk.to(vae_dtype) / latents_std + latents_mean, return_dict=False)[0]``
(``latents_mean`` / ``latents_std`` from the VAE config; note the division by std), and
concatenates the decoded clips along time (``history_video``). Every chunk is a separate, fresh
``vae.decode`` (the Wan causal cache restarts: each chunk's first latent frame decodes to ONE
frame, the others to 4), so ``k`` chunks of ``n`` latent frames give ``k * (4 (n - 1) + 1)`` frames;
after the loop the concatenation is cut to ``(F - 1) // 4 * 4 + 1`` frames and post-processed once
with ``postprocess_video``. It decodes even for ``output_type="latent"`` (then returns the latents).
The number of chunks is ``ceil(num_frames / (4 (n - 1) + 1))``.

Here: ``num_latent_frames_per_chunk=2`` (real: 9) and ``num_frames=9`` -> 2 chunks of 5 decoded
frames -> 10 -> trimmed to 9, at 32 x 32 pixels. ``history_sizes`` keeps the released
``[16, 2, 1]``.
"""

from __future__ import annotations

import torch

from vidmem.tiny import tiny_tokenizer, tiny_wan_vae

from . import ZooCase


def _helios(seed: int):
    from diffusers import HeliosPipeline, HeliosScheduler, HeliosTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    vae = tiny_wan_vae(seed)
    torch.manual_seed(seed + 1)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=260, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0)).eval()
    torch.manual_seed(seed + 2)
    transformer = HeliosTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
        out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_dim=(4, 4, 4),
        has_multi_term_memory_patch=True, guidance_cross_attn=True, zero_history_timestep=True,
        is_amplify_history=False).eval()
    # one stage (Helios-Base; the pyramid pipeline uses three)
    scheduler = HeliosScheduler(stage_range=[0, 1], stages=1, use_dynamic_shifting=True)
    pipe = HeliosPipeline(tokenizer=tiny_tokenizer(64), text_encoder=text_encoder, vae=vae,
                          scheduler=scheduler, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _helios_call() -> dict:
    return dict(prompt="a cat and a dog bake a cake", negative_prompt="blurry, static",
                height=32, width=32, num_frames=9, num_latent_frames_per_chunk=2,
                num_inference_steps=2, guidance_scale=5.0, max_sequence_length=32,
                generator=torch.Generator().manual_seed(0))


CASES = [
    ZooCase(name="helios", pipeline_class="HeliosPipeline", folder="helios", build=_helios,
            call=_helios_call, fps=24, decode_pattern="in-loop",
            notes="2 chunks of 2 latent frames, each decoded alone right after it is denoised "
                  "(vae.decode(chunk / latents_std + latents_mean)), 5 + 5 frames concatenated "
                  "then cut to 9; decodes even with output_type='latent'."),
]
