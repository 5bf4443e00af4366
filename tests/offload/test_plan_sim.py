"""Plans from simulated stages: the tiny pipeline's budget sweep, renders under every plan, the
reserve override, devices, budget "auto", float8 storage, and real Wan shapes."""

import numpy as np
import pytest
import torch

import vidmem
from vidmem.offload import plan_offload
from vidmem.offload.simulate import CUDA_CONTEXT_BYTES, KERNEL_WORKSPACE_BYTES
from vidmem.offload.stages import Workload

#: A long, low-resolution clip with a short prompt: the tiny transformer's activations grow with
#: the clip's length while the decode works on one chunk at a time, so here (as with real
#: models) the denoising stage is the largest and block streaming has a budget range.
LONG = Workload(1601, 64, 96, call_kwargs={"max_sequence_length": 16}, chunk_frames=4)
SHORT_CALL = dict(prompt="a cat", num_frames=17, height=64, width=96, num_inference_steps=2)


@pytest.fixture(scope="module")
def pipe():
    p = vidmem.tiny_pipeline("wan", seed=0)
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def reference(pipe):
    return plan_offload(pipe, "8GiB", device="cuda", workload=LONG)


def worst(plan):
    order = ["resident", "model", "blocks"]
    return max((c.strategy for c in plan.components), key=order.index)


def test_the_budget_sweep_goes_resident_model_blocks(pipe, reference):
    """Budgets from everything-resident down to the smallest workable one: the plans go
    resident -> model -> blocks, each within its budget, from the simulated numbers."""
    assert reference.activation_source == "simulated"
    assert reference.overhead_bytes == CUDA_CONTEXT_BYTES + KERNEL_WORKSPACE_BYTES
    stages = {c.name: c for c in reference.components}
    assert stages["transformer"].activation_bytes > stages["vae"].activation_bytes
    top = reference.overhead_bytes + sum(c.weights_bytes for c in reference.components) + max(
        c.activation_bytes for c in reference.components)
    low = reference.smallest_budget_bytes
    assert low < top
    seen = []
    for budget in np.linspace(top, low, 25).astype(int):
        plan = plan_offload(pipe, int(budget), device="cuda", activations_from=reference)
        assert plan.predicted_peak_bytes <= plan.budget_bytes
        seen.append(worst(plan))
    assert seen[0] == "resident" and seen[-1] == "blocks" and "model" in seen
    order = ["resident", "model", "blocks"]
    assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen)
    with pytest.raises(ValueError, match="smallest budget that would work"):
        plan_offload(pipe, low - 1, device="cuda", activations_from=reference)


def test_every_plan_renders_what_the_unplanned_pipeline_renders(pipe, reference, tmp_path):
    from video_utils import read_video

    vidmem.render(pipe, tmp_path / "plain.mp4", lossless=True,
                  generator=torch.Generator().manual_seed(0), **SHORT_CALL)
    expected = read_video(tmp_path / "plain.mp4")[0]
    top = reference.predicted_peak_bytes + 1
    budgets = {"resident": top, "blocks": reference.smallest_budget_bytes}
    model_budget = (reference.overhead_bytes + reference.component("transformer").weights_bytes
                    + reference.component("transformer").activation_bytes)
    budgets["model"] = model_budget
    strategies = set()
    for name, budget in budgets.items():
        plan = plan_offload(pipe, budget, device="cuda", activations_from=reference)
        strategies.add(worst(plan))
        applied = plan.apply(pipe, simulate=True)
        vidmem.render(pipe, tmp_path / f"{name}.mp4", lossless=True, offload=applied,
                      generator=torch.Generator().manual_seed(0), **SHORT_CALL)
        applied.remove()
        assert np.array_equal(read_video(tmp_path / f"{name}.mp4")[0], expected), name
    assert strategies == {"resident", "model", "blocks"}


def test_reserve_overrides_the_simulation_and_zero_is_accepted(pipe):
    plan = plan_offload(pipe, "1GiB", device="cuda", reserve="64MiB")
    assert plan.reserve_bytes == 64 << 20 and plan.overhead_bytes == 0
    assert all(c.activation_bytes == 64 << 20 for c in plan.components)
    zero = plan_offload(pipe, 2 << 20, device="cuda", reserve=0)
    assert zero.reserve_bytes == 0 and zero.predicted_peak_bytes <= 2 << 20
    assert "reserve 0 B per stage" in str(zero)


def test_the_plan_prints_and_serializes_weights_and_activations(pipe, reference):
    text = str(reference)
    assert "weights" in text and "activations" in text and "simulated for 1601 frames" in text
    d = reference.to_dict()
    for c in d["components"]:
        assert c["weights_bytes"] > 0 and c["activation_bytes"] > 0
        assert c["stage_peak_bytes"] >= c["activation_bytes"] + d["overhead_bytes"]
    assert d["decode"]["tile_size"] == 0 and "chunks of 1 latent frame;" in d["decode"]["summary"]
    assert d["decode"]["frames"] == 1601 and d["decode"]["tiles"] == 1
    assert d["smallest_budget_bytes"] == reference.smallest_budget_bytes


def test_devices_and_auto_budget_are_checked(pipe, monkeypatch):
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        plan_offload(pipe, "8GiB", device="tpu", reserve=1)
    assert plan_offload(pipe, "8GiB", device="cuda:1", reserve=1).device == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="budget 'auto' reads the free memory of a CUDA device"):
        plan_offload(pipe, "auto", device="cuda", reserve=1)


def test_auto_budget_is_free_memory_minus_the_margin(pipe, monkeypatch):
    from vidmem.offload import plan as plan_module

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 << 30, 24 << 30))
    plan = plan_offload(pipe, "auto", device="cuda", reserve=1)
    margin = max(plan_module.AUTO_MARGIN_MIN_BYTES, int(plan_module.AUTO_MARGIN_FRACTION * (24 << 30)))
    assert plan.budget_bytes == (10 << 30) - margin
    assert plan.budget_note.startswith("auto: 10.00 GiB free of 24.00 GiB")
    simulated = plan_offload(pipe, "auto", device="cuda", workload=Workload(9, 32, 48))
    assert simulated.overhead_bytes == KERNEL_WORKSPACE_BYTES  # the context is outside "free"


def test_float8_storage_only_where_it_avoids_block_streaming(pipe, reference):
    from vidmem.offload.fp8 import fp8_sizes

    budget = reference.smallest_budget_bytes
    bf16 = plan_offload(pipe, budget, device="cuda", activations_from=reference)
    assert bf16.component("transformer").strategy == "blocks"
    fp8 = plan_offload(pipe, budget, device="cuda", activations_from=reference, allow_fp8=True)
    t = fp8.component("transformer")
    sizes = fp8_sizes(pipe.transformer)
    assert t.fp8 and t.strategy in ("model", "resident")
    assert t.fp8_bytes == sizes.stored_bytes < t.weights_bytes
    assert fp8.predicted_peak_bytes <= budget
    assert "float8 storage" in str(fp8)
    assert not any(c.fp8 for c in fp8.components if c.name != "transformer")
    roomy = plan_offload(pipe, reference.predicted_peak_bytes + 1, device="cuda",
                         activations_from=reference, allow_fp8=True)
    assert not any(c.fp8 for c in roomy.components)  # nothing to gain: full precision


def test_float8_plan_renders_close_to_bf16(tmp_path):
    """Installing a float8 plan: layerwise casting on the transformer; the latents stay close to
    the bf16 ones (the quality cost is measured in benchmarks/bench_plan.py)."""
    from vidmem.offload.plan import ComponentPlan, OffloadPlan
    from vidmem.metrics import psnr

    pipe = vidmem.tiny_pipeline("wan", seed=0).to(torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    call = dict(SHORT_CALL, output_type="latent")
    reference = pipe(generator=torch.Generator().manual_seed(0), **call).frames.float()
    sizes = {n: vidmem.offload.module_bytes(getattr(pipe, n))
             for n in ("text_encoder", "transformer", "vae")}
    comps = [ComponentPlan(n, sizes[n], "model") for n in sizes]
    comps[1].fp8 = True
    applied = OffloadPlan("cuda", sum(sizes.values()), 0, comps).apply(pipe, simulate=True)
    assert ("fp8", "transformer") in applied.events
    assert pipe.transformer.blocks[0].ffn.net[2].weight.dtype == torch.float8_e4m3fn
    got = pipe(generator=torch.Generator().manual_seed(0), **call).frames.float()
    applied.remove()
    assert torch.isfinite(got).all()
    span = (reference.max() - reference.min()).item()
    assert 20 < psnr(got, reference, peak_to_peak=span) < float("inf")


@pytest.mark.slow
def test_a_plan_at_real_wan14b_720p_shapes(tmp_path):
    """Wan 2.1 14B at 1280x720, 81 frames, from the configs alone: the transformer stage's
    activations are several GiB, and the plan says so."""
    import time

    from vidmem.loading import load_pipeline_skeleton
    from vidmem.shapes import write_config_only_pipeline

    skeleton = load_pipeline_skeleton(str(write_config_only_pipeline(tmp_path / "w", "14B")),
                                      torch.bfloat16)
    t0 = time.perf_counter()
    plan = plan_offload(skeleton, "24GiB", device="cuda", num_frames=81, height=720, width=1280)
    assert time.perf_counter() - t0 < 60
    t = plan.component("transformer")
    assert t.activation_bytes > 4 * 2**30 and t.strategy == "blocks"
    assert plan.component("text_encoder").activation_bytes < t.activation_bytes
    assert plan.predicted_peak_bytes <= 24 * 2**30


def test_config_skeletons_simulate_inference_not_training(tmp_path):
    """A pipeline built from configs alone (``vidmem plan`` on a hub id) is in eval mode like
    ``from_pretrained``'s: in training mode umt5's dropout masks made the simulated text
    encoder stage 1.18x what inference allocates."""
    import torch

    from vidmem.loading import load_pipeline_skeleton
    from vidmem.shapes import write_config_only_pipeline

    skeleton = load_pipeline_skeleton(str(write_config_only_pipeline(tmp_path / "w", "1.3B")),
                                      torch.bfloat16)
    modules = [m for m in skeleton.components.values() if isinstance(m, torch.nn.Module)]
    assert len(modules) == 3 and not any(m.training for m in modules)
