"""Render under an accelerator memory budget: vidmem simulates each stage of this render (text
encoding, one denoising step, the streaming decode) at its shape, then decides which components
stay resident, move in per stage (with the next one prefetched) or stream in blocks.

    python samples/render_with_budget.py [OUT.mp4] [BUDGET]

On a machine without CUDA the plan is printed (the simulation runs on fake tensors, anywhere)
and the render runs on the CPU unchanged.
"""

import sys

import torch

import vidmem

out = sys.argv[1] if len(sys.argv) > 1 else "budget.mp4"
budget = sys.argv[2] if len(sys.argv) > 2 else "2GiB"
pipe = vidmem.tiny_pipeline("wan", seed=0)
call = dict(prompt="a lantern floating over a dark lake", num_frames=17, height=64, width=96,
            num_inference_steps=2)
# a CUDA plan can be made anywhere; plan for the render's own shape
plan = vidmem.plan_offload(pipe, budget, device="cuda", num_frames=17, height=64, width=96)
print(plan)
print(plan.to_json())
# overwrite=True: running the sample again replaces its own earlier output.
report = vidmem.render(
    pipe, out, overwrite=True, offload=plan if torch.cuda.is_available() else None,
    tile_size=plan.decode_tile_size,  # the decode tiling the plan's decode stage fits with
    generator=torch.Generator().manual_seed(0), **call,
)
print(report)
