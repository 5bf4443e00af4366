"""GPU checks of the memory simulation (marked `gpu`, skipped without CUDA): simulated stage peaks
against torch.cuda.max_memory_allocated, and a render under a plan within its budget."""

import pytest
import torch

import vidmem
from benchmarks.bench_plan import model_offload_budget
from vidmem.offload import plan_offload
from vidmem.offload.measure import cuda_decode_peak, cuda_stage_peaks
from vidmem.offload.simulate import CUDA_CONTEXT_BYTES
from vidmem.offload.stages import (Workload, decode_latents_meta, simulate_decode,
                                   simulate_pipeline_call)

pytestmark = pytest.mark.gpu
TOLERANCE = 0.15


@pytest.fixture(scope="module")
def pipe():
    p = vidmem.tiny_pipeline("wan", seed=0).to("cuda")
    p.set_progress_bar_config(disable=True)
    return p


@pytest.mark.parametrize("shape", [(17, 64, 96), (33, 128, 192)])
def test_simulated_stages_match_max_memory_allocated(pipe, shape):
    workload = Workload(*shape)
    simulated = simulate_pipeline_call(pipe, workload, target="cuda")
    measured = cuda_stage_peaks(pipe, workload)
    for name in ("text_encoder", "transformer"):
        ratio = simulated[name].activation_bytes / measured[name]
        assert abs(ratio - 1) <= TOLERANCE, (name, simulated[name].activation_bytes,
                                             measured[name])
    latents = decode_latents_meta(pipe, workload)
    stage, plan = simulate_decode(pipe.vae, latents, target="cuda", tile_size=0)
    measured_decode = cuda_decode_peak(pipe.vae, latents, plan)
    assert abs(stage.activation_bytes / measured_decode - 1) <= TOLERANCE, (
        stage.activation_bytes, measured_decode)


def test_a_render_under_a_plan_stays_within_its_budget(tmp_path):
    tiny = vidmem.tiny_pipeline("wan", seed=0)
    tiny.set_progress_bar_config(disable=True)
    size = dict(num_frames=33, height=128, width=192)
    reference = plan_offload(tiny, "8GiB", device="cuda", **size)
    plan = plan_offload(tiny, model_offload_budget(reference), device="cuda",
                        activations_from=reference)
    assert "model" in {c.strategy for c in plan.components}
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    vidmem.render(tiny, tmp_path / "x.mp4", offload=plan, tile_size=plan.decode_tile_size,
                  prompt="gpu", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                  **size)
    # the allocator does not see the CUDA context, which the budget includes
    assert torch.cuda.max_memory_allocated() <= plan.budget_bytes - CUDA_CONTEXT_BYTES
