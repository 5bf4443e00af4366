"""GPU checks (marked `gpu`, skipped without CUDA): device memory bounded by the budget and
independent of clip length."""

import pytest
import torch

import vidmem
from vidmem.offload import module_bytes, plan_offload
from vidmem.tiny import tiny_wan_vae

pytestmark = pytest.mark.gpu


def test_render_within_budget_plus_reserve(tmp_path):
    pipe = vidmem.tiny_pipeline("wan", seed=0)
    pipe.set_progress_bar_config(disable=True)
    budget = module_bytes(pipe.transformer) + (64 << 20)
    plan = plan_offload(pipe, budget, device="cuda", reserve=64 << 20)
    torch.cuda.reset_peak_memory_stats()
    vidmem.render(pipe, tmp_path / "x.mp4", offload=plan, prompt="gpu", num_frames=17, height=64,
                  width=96, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.cuda.max_memory_allocated() <= plan.budget_bytes + plan.reserve_bytes


def test_decode_peak_device_memory_independent_of_length():
    vae = tiny_wan_vae(0).cuda()
    peaks = []
    for latent_frames in (5, 21):
        z = torch.randn(1, 16, latent_frames, 32, 48, device="cuda")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        for _ in vidmem.decode_latents(vae, z, chunk_frames=8, tile_size=128, tile_overlap=32):
            pass
        peaks.append(torch.cuda.max_memory_allocated() - z.numel() * z.element_size())
    assert peaks[1] <= peaks[0] * 1.05 + (1 << 20)
