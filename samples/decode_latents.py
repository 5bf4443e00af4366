"""Decode latents you already have, chunk by chunk and tile by tile, without holding the clip.

    python samples/decode_latents.py [OUT.mp4]

Here the latents come from the tiny pipeline; with a real model they would come from
``pipe(..., output_type="latent")`` (denormalized as the pipeline does) or from a saved file.
"""

import sys

import torch

import vidmem

out = sys.argv[1] if len(sys.argv) > 1 else "decoded.mp4"
vae = vidmem.tiny_pipeline("wan", seed=0).vae
latents = torch.randn(1, 16, 5, 12, 16, generator=torch.Generator().manual_seed(0))

# 1) As a stream of uint8 chunks (T, H, W, 3): do whatever you like with each one.
for i, chunk in enumerate(vidmem.decode_latents(vae, latents, chunk_frames=8, tile_size=64,
                                                tile_overlap=32)):
    print(f"chunk {i}: {tuple(chunk.shape)} {chunk.dtype}")

# 2) Straight into an MP4.
# overwrite=True: running the sample again replaces its own earlier output.
print(vidmem.decode_to_video(vae, latents, out, fps=16, chunk_frames=8, overwrite=True))
