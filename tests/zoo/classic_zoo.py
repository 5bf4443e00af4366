"""The families vidmem already builds tiny (:func:`vidmem.tiny.tiny_pipeline`), as zoo cases.

Each case wraps ``tiny_pipeline(family, seed)`` and calls it the way the existing tests do
(``tests/test_cli_model.py``: 64x96 pixels, 2 steps; 9 frames, 7 for Mochi's 6k+1 rule, 6 for
SVD; a 64x96 random first frame for the image-to-video families).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from vidmem.tiny import tiny_pipeline

from . import ZooCase


def first_frame(height: int = 64, width: int = 96, seed: int = 0) -> Image.Image:
    """A random RGB first frame built in code (the tests' ``--image``)."""
    pixels = np.random.RandomState(seed).randint(0, 255, (height, width, 3), np.uint8)
    return Image.fromarray(pixels)


def _builder(family: str):
    def build(seed: int):
        pipe = tiny_pipeline(family, seed)
        pipe.set_progress_bar_config(disable=True)
        return pipe
    return build


def _caller(family: str, frames: int, *, image: bool = False, prompt: bool = True,
            global_seed: bool = False):
    def call() -> dict:
        if global_seed:
            # the LTX decoder injects noise with torch.randn without a generator (the global
            # RNG), not the pipeline's generator: seed it so that two calls give the same frames.
            torch.manual_seed(0)
        kwargs = dict(num_frames=frames, height=64, width=96, num_inference_steps=2,
                      generator=torch.Generator().manual_seed(0))
        if prompt:
            kwargs["prompt"] = "a tiny boat"
        if image:
            kwargs["image"] = first_frame()
        return kwargs
    return call


CASES = [
    ZooCase("classic-wan", "WanPipeline", "wan", _builder("wan"), _caller("wan", 9), fps=16,
            notes="Wan 2.1 layout (AutoencoderKLWan, causal x4 time, x8 space); one "
                  "vae.decode(latents, return_dict=False) after the loop, latents "
                  "de-normalized with latents_mean / latents_std first."),
    ZooCase("classic-wan-i2v", "WanImageToVideoPipeline", "wan", _builder("wan-i2v"),
            _caller("wan-i2v", 9, image=True), fps=16,
            notes="Wan 2.2 I2V layout: two transformers switched at boundary_ratio=0.5, no "
                  "image encoder; the first frame is VAE-encoded (vae.encode runs before the "
                  "loop). One vae.decode after the loop."),
    ZooCase("classic-cogvideox", "CogVideoXPipeline", "cogvideo", _builder("cogvideox"),
            _caller("cogvideox", 9), fps=8,
            notes="decode_latents permutes latents [B, F, C, H, W] -> [B, C, F, H, W] and calls "
                  "vae.decode(latents).sample once; the CogVideoX VAE itself decodes in "
                  "internal frame batches (its own causal conv cache)."),
    ZooCase("classic-ltx", "LTXPipeline", "ltx", _builder("ltx"),
            _caller("ltx", 9, global_seed=True), fps=24,
            notes="9 frames = 2 latent frames (x8 time). Latents are unpacked from the "
                  "transformer's token layout and de-normalized (latents_mean / latents_std / "
                  "scaling_factor), mixed with generator noise by decode_noise_scale (default "
                  "decode_timestep 0.0: a no-op mix, but the generator draw still happens), then "
                  "ONE vae.decode(latents, timestep, return_dict=False) with the timestep as a "
                  "positional argument. The decoder's inject_noise layers call torch.randn "
                  "without a generator (global RNG), so call() seeds torch.manual_seed(0) for "
                  "determinism."),
    ZooCase("classic-mochi", "MochiPipeline", "mochi", _builder("mochi"), _caller("mochi", 7),
            fps=10,
            notes="6k+1 frames (x6 time): 7 frames = 2 latent frames. The docstring example "
                  "exports with export_to_video's default fps (10); Mochi itself is 30 fps. "
                  "Latents are de-normalized with the VAE's latents_mean / latents_std before "
                  "one vae.decode(latents, return_dict=False); inside it the decoder makes 6 "
                  "frames per latent frame and drop_last_temporal_frames cuts the FIRST 5 "
                  "(12 -> 7 here)."),
    ZooCase("classic-hunyuanvideo", "HunyuanVideoPipeline", "hunyuan_video",
            _builder("hunyuanvideo"), _caller("hunyuanvideo", 9), fps=15,
            notes="one vae.decode(latents, return_dict=False) after the loop (latents divided by "
                  "scaling_factor)."),
    ZooCase("classic-hunyuanvideo15", "HunyuanVideo15Pipeline", "hunyuan_video1_5",
            _builder("hunyuanvideo15"), _caller("hunyuanvideo15", 9), fps=15,
            notes="HunyuanVideo 1.5 T2V (Qwen2.5-VL text model with a chat template, ByT5 glyph "
                  "encoder, causal 1.5 VAE); one vae.decode after the loop."),
    ZooCase("classic-svd", "StableVideoDiffusionPipeline", "stable_video_diffusion",
            _builder("svd"), _caller("svd", 6, image=True, prompt=False), fps=7,
            notes="image-to-video, no prompt. decode_latents flattens [B, F, C, H, W] -> "
                  "[B*F, C, H, W] and loops vae.decode(chunk, num_frames=n) over "
                  "decode_chunk_size frames (default: num_frames, so one call here: 'final'; "
                  "pass decode_chunk_size < num_frames for several). The temporal decoder mixes "
                  "frames only within one call. Round trip: the loaded CLIP image encoder's "
                  "embeddings differ by ~2e-7 (CPU GEMM on differently aligned loaded buffers; "
                  "cloning its parameters makes it exact), amplified to ~3e-5 in the frames by "
                  "the sigma_max=700 schedule: compare the loaded pipeline against itself, or "
                  "allow ~1e-4."),
]
