"""The same `vidmem.render` call for another pipeline family: here a tiny LTX-Video pipeline
(timestep-conditioned decoder that injects noise, x8 time, x32 space), built offline.

    python samples/render_other_family.py [OUT.mp4] [FAMILY]

FAMILY: wan, cogvideox, ltx, mochi, hunyuanvideo, animatediff (svd needs an image: see
`vidmem render --help`). With a real model: `DiffusionPipeline.from_pretrained(...)` instead.
"""

import sys

import torch

import vidmem

out = sys.argv[1] if len(sys.argv) > 1 else "family.mp4"
family = sys.argv[2] if len(sys.argv) > 2 else "ltx"
frames = {"ltx": 17, "mochi": 13, "animatediff": 8}.get(family, 17)
pipe = vidmem.tiny_pipeline(family, seed=0)
torch.manual_seed(0)  # LTX's decoder draws its noise from the global RNG
# overwrite=True: running the sample again replaces its own earlier output.
report = vidmem.render(pipe, out, overwrite=True, prompt="waves breaking on a rocky shore",
                       num_frames=frames, height=64, width=96, num_inference_steps=2,
                       generator=torch.Generator().manual_seed(0))
print(report)
