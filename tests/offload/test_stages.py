"""Simulated stage peaks against an independent measurement: the PyTorch profiler's allocation
events in a real CPU run of the same stage (the tiny pipelines, random weights)."""

import pytest
import torch

import vidmem
from vidmem.offload.measure import measure_decode_cpu, measure_pipeline_cpu
from vidmem.offload.stages import (Workload, decode_latents_meta, simulate_decode,
                                   simulate_pipeline_call)

#: two shapes per family (frames, height, width), valid for the family's frame/size rules
SHAPES = {
    "wan": [(9, 32, 48), (17, 64, 96)],
    "cogvideox": [(9, 64, 96), (17, 64, 96)],
    "ltx": [(9, 64, 96), (17, 128, 192)],
}
TOLERANCE = 0.10


@pytest.fixture(scope="module")
def pipes():
    cache = {}

    def get(family):
        if family not in cache:
            cache[family] = vidmem.tiny_pipeline(family, seed=0)
            cache[family].set_progress_bar_config(disable=True)
        return cache[family]

    return get


@pytest.mark.parametrize("family, shape", [(f, s) for f, shapes in SHAPES.items() for s in shapes])
def test_simulated_stage_peaks_match_the_profiler(pipes, family, shape):
    """Text encoding and one denoising step (CFG as each pipeline runs it), simulated on fake
    tensors vs measured on real ones: every stage within 10%."""
    pipe = pipes(family)
    workload = Workload(*shape)
    simulated = simulate_pipeline_call(pipe, workload, target="cpu")
    measured = measure_pipeline_cpu(pipe, workload)
    assert set(simulated) >= {"text_encoder", "transformer"}
    for name, stage in simulated.items():
        ratio = stage.activation_bytes / measured[name]
        assert abs(ratio - 1) <= TOLERANCE, (name, stage.activation_bytes, measured[name])


@pytest.mark.parametrize("shape, tile", [((9, 32, 48), None), ((17, 64, 96), None),
                                         ((9, 64, 96), 48)])
def test_simulated_wan_decode_matches_the_profiler(pipes, shape, tile):
    """vidmem's streaming decode of the Wan VAE (first two chunks, every tile, blending and the
    uint8 conversion, causal caches of all tiles alive): within 10% of the profiler."""
    pipe = pipes("wan")
    latents = decode_latents_meta(pipe, Workload(*shape))
    stage, plan = simulate_decode(pipe.vae, latents, target="cpu", tile_size=tile,
                                  tile_overlap=16 if tile else None)
    assert (len(plan.tiles) > 1) == (tile is not None)
    measured = measure_decode_cpu(pipe.vae, latents, plan)
    assert abs(stage.activation_bytes / measured - 1) <= TOLERANCE, (stage.activation_bytes,
                                                                      measured)


def test_doubling_the_frames_raises_the_transformer_stage(pipes):
    pipe = pipes("wan")
    short = simulate_pipeline_call(pipe, Workload(17, 128, 192), target="cuda")["transformer"]
    long = simulate_pipeline_call(pipe, Workload(33, 128, 192), target="cuda")["transformer"]
    # 5 -> 9 latent frames: 480 -> 864 video tokens (the 512 text tokens stay)
    assert long.activation_bytes > 1.4 * short.activation_bytes


def test_every_denoiser_gets_a_stage_even_when_the_step_skips_it():
    """Wan 2.2 layout: the simulated step runs `transformer`; `transformer_2` (same architecture)
    gets its stage, and the pipeline's VAE encode of the conditioning frames is a VAE stage."""
    pipe = vidmem.tiny_pipeline("wan-i2v", seed=0)
    stages = simulate_pipeline_call(pipe, Workload(9, 64, 96), target="cuda")
    assert stages["transformer"].calls == 2  # conditional and unconditional passes
    assert stages["transformer_2"].activation_bytes == stages["transformer"].activation_bytes
    assert stages["vae"].calls == 1 and stages["vae"].activation_bytes > 0


def test_the_simulation_leaves_the_pipeline_untouched(pipes):
    pipe = pipes("wan")
    before = {n: p.data_ptr() for n, p in pipe.transformer.named_parameters()}
    scheduler_state = dict(pipe.scheduler.__dict__)
    simulate_pipeline_call(pipe, Workload(9, 32, 48), target="cuda")
    assert {n: p.data_ptr() for n, p in pipe.transformer.named_parameters()} == before
    assert "forward" not in pipe.transformer.__dict__
    assert pipe.scheduler.__dict__.keys() == scheduler_state.keys()
    out = pipe("a", num_frames=9, height=32, width=48, num_inference_steps=1,
               output_type="latent", generator=torch.Generator().manual_seed(0)).frames
    assert torch.isfinite(out).all()
