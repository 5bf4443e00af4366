"""Split one render over the processes of your own torch.distributed job.

    torchrun --standalone --nproc-per-node 2 samples/render_distributed.py [OUT.mp4]
    python samples/render_distributed.py [OUT.mp4]     # one process: renders alone

Every rank runs this script with the same arguments. ``vidmem.render`` splits the decode over
the process group you give it (default: the world group, once initialized): each rank decodes
its share of the spatial tiles, rank 0 blends them exactly as one process would and writes the
file. ``process_group=False`` makes a rank render alone (e.g. its own clip).
"""

import os
import sys

import torch
import torch.distributed as dist

import vidmem

out = sys.argv[1] if len(sys.argv) > 1 else "split.mp4"
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # CPU tensors through gloo, GPU tensors through NCCL (with torch.cuda.set_device(LOCAL_RANK)).
    dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")

pipe = vidmem.tiny_pipeline("wan", seed=0)
pipe.set_progress_bar_config(disable=True)
report = vidmem.render(pipe, out, tile_size=48, tile_overlap=16, chunk_frames=4,
                       prompt="a red fox in snow", num_frames=9, height=64, width=96,
                       num_inference_steps=2, generator=torch.Generator().manual_seed(0))
if not dist.is_initialized() or dist.get_rank() == 0:
    print(report)  # the other ranks' reports say what they decoded; they wrote nothing
if dist.is_initialized():
    dist.destroy_process_group()
