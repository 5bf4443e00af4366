"""Render a clip with the built-in tiny Wan pipeline, streaming frames straight to an MP4.

    python samples/render_tiny.py [OUT.mp4]
"""

import sys

import torch

import vidmem

out = sys.argv[1] if len(sys.argv) > 1 else "tiny.mp4"
pipe = vidmem.tiny_pipeline("wan", seed=0)
# overwrite=True: running the sample again replaces its own earlier output.
report = vidmem.render(
    pipe, out, overwrite=True, fps=16, chunk_frames=8,
    prompt="a paper boat drifting down a rainy street", num_frames=17, height=64, width=96,
    num_inference_steps=2, generator=torch.Generator().manual_seed(0),
)
print(report)
