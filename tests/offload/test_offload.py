"""Offload planning (pure arithmetic, testable without CUDA) and the hook sequencing (simulated)."""

import json

import numpy as np
import pytest
import torch

import vidmem
from vidmem.offload import module_bytes, plan_offload
from vidmem.offload import apply as apply_module

CALL = dict(prompt="a cat", num_frames=9, height=32, width=48, num_inference_steps=2)


@pytest.fixture()
def pipe():
    p = vidmem.tiny_pipeline("wan", seed=0)
    p.set_progress_bar_config(disable=True)
    return p


def sizes(pipe):
    return {n: module_bytes(getattr(pipe, n)) for n in ("text_encoder", "transformer", "vae")}


def strategies(plan):
    return {c.name: c.strategy for c in plan.components}


def test_budget_above_total_keeps_everything_resident(pipe):
    s = sizes(pipe)
    plan = plan_offload(pipe, sum(s.values()) + 1024, device="cuda", reserve=1)
    assert strategies(plan) == dict.fromkeys(s, "resident")
    assert [c.name for c in plan.components] == ["text_encoder", "transformer", "vae"]
    assert {c.name: c.bytes for c in plan.components} == s


def test_budget_between_largest_and_total_moves_models_per_stage(pipe):
    s = sizes(pipe)
    assert s["transformer"] == max(s.values())
    plan = plan_offload(pipe, s["transformer"] + s["text_encoder"] + 100, device="cuda", reserve=1)
    got = strategies(plan)
    assert set(got.values()) <= {"resident", "model"} and "model" in got.values()
    assert got["transformer"] == "model"
    assert plan.predicted_peak_bytes <= plan.budget_bytes


def test_budget_below_largest_streams_its_blocks(pipe):
    s = sizes(pipe)
    plan = plan_offload(pipe, s["transformer"] - 1000, device="cuda", reserve=1)
    t = plan.component("transformer")
    assert t.strategy == "blocks" and t.blocks == 6 and 1 <= t.blocks_per_group <= 6
    assert plan.component("vae").strategy == "model"  # VAEs are never block-streamed
    assert plan.predicted_peak_bytes <= plan.budget_bytes


def test_too_small_budget_names_the_smallest_that_works(pipe):
    with pytest.raises(ValueError, match="smallest budget that would work is 276.58 KiB"):
        plan_offload(pipe, "100KiB", device="cuda", reserve=1)
    # and that budget does work
    plan_offload(pipe, int(276.58 * 1024) + 16, device="cuda", reserve=1)


def test_budget_strings_and_json(pipe):
    plan = plan_offload(pipe, "6GB", device="cuda")
    d = json.loads(json.dumps(plan.to_dict()))
    assert set(d) >= {"device", "budget_bytes", "predicted_peak_bytes", "components"}
    assert d["device"] == "cuda" and d["budget_bytes"] == 6 * 10**9
    assert {c["name"]: c["strategy"] for c in d["components"]} == strategies(plan)
    assert all({"name", "weights_bytes", "activation_bytes", "stage_peak_bytes", "strategy"}
               <= set(c) for c in d["components"])
    assert "transformer" in str(plan) and "strategy" in str(plan)
    with pytest.raises(ValueError, match="cannot parse memory size"):
        plan_offload(pipe, "eight gigs")


def test_hooks_fire_in_sequence_order_and_frames_are_identical(pipe):
    expected = pipe(**CALL, generator=torch.Generator().manual_seed(0), output_type="np").frames
    s = sizes(pipe)
    plan = plan_offload(pipe, s["transformer"] + 100, device="cuda", reserve=1)
    assert set(strategies(plan).values()) == {"model"}
    applied = plan.apply(pipe, simulate=True)
    latents = pipe(**CALL, generator=torch.Generator().manual_seed(0), output_type="latent").frames
    applied.prepare_for_decode()
    assert applied.events == [("onload", "text_encoder"), ("offload", "text_encoder"),
                              ("onload", "transformer"), ("offload", "transformer"),
                              ("onload", "vae")]
    got = pipe(**CALL, generator=torch.Generator().manual_seed(0), output_type="np").frames
    applied.remove()
    assert np.array_equal(got, expected)
    assert latents.shape[2] == 3


def test_render_with_a_plan_gives_identical_frames(pipe, tmp_path):
    from video_utils import read_video

    vidmem.render(pipe, tmp_path / "a.mp4", lossless=True,
                  generator=torch.Generator().manual_seed(0), **CALL)
    s = sizes(pipe)
    applied = plan_offload(pipe, s["transformer"] + 100, device="cuda", reserve=1).apply(
        pipe, simulate=True)
    vidmem.render(pipe, tmp_path / "b.mp4", lossless=True, offload=applied,
                  generator=torch.Generator().manual_seed(0), **CALL)
    assert ("onload", "vae") in applied.events
    assert np.array_equal(read_video(tmp_path / "a.mp4")[0], read_video(tmp_path / "b.mp4")[0])


def test_device_map_pipeline_is_refused_clearly(pipe):
    pipe.hf_device_map = {"transformer": 0}
    plan = plan_offload(pipe, "8GiB", device="cuda")
    with pytest.raises(ValueError, match="reset_device_map"):
        plan.apply(pipe, simulate=True)


def test_no_accelerator_plans_cpu_and_installs_nothing(pipe, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(apply_module, "_warned_no_device", False)
    plan = plan_offload(pipe, "8GiB")
    assert plan.device == "cpu" and set(strategies(plan).values()) == {"resident"}
    with pytest.warns(RuntimeWarning, match="no accelerator here"):
        applied = plan.apply(pipe)
    assert not applied.active and applied.events == []
    assert all(getattr(m, "_hf_hook", None) is None
               for m in (pipe.text_encoder, pipe.transformer, pipe.vae))
    # a CUDA plan can be computed anywhere; applying it here warns (once) and installs nothing
    cuda_plan = plan_offload(pipe, "8GiB", device="cuda")
    assert cuda_plan.device == "cuda"
    assert not cuda_plan.apply(pipe).active


def test_next_model_component_is_prefetched_when_both_fit(pipe):
    """Three `model` components where any two fit: while one runs the next is copied in (on a
    side stream on CUDA), and the stage start then waits for it instead of copying."""
    s = sizes(pipe)
    from vidmem.offload.plan import ComponentPlan, OffloadPlan

    comps = [ComponentPlan(n, s[n], "model") for n in ("text_encoder", "transformer", "vae")]
    plan = OffloadPlan("cuda", s["transformer"] + s["vae"] + 1, 0, comps)
    comps[0].prefetch, comps[1].prefetch = "transformer", "vae"
    applied = plan.apply(pipe, simulate=True)
    expected = pipe(**CALL, generator=torch.Generator().manual_seed(0), output_type="np").frames
    applied.remove()
    assert applied.events[:6] == [("onload", "text_encoder"), ("prefetch", "transformer"),
                                  ("offload", "text_encoder"), ("onload", "transformer"),
                                  ("prefetch", "vae"), ("offload", "transformer")]
    assert applied.events[6] == ("onload", "vae")
    baseline = pipe(**CALL, generator=torch.Generator().manual_seed(0), output_type="np").frames
    assert np.array_equal(expected, baseline)


def test_planner_prefetches_only_within_the_budget():
    """A chain where the big middle stage must stream blocks: the planner keeps one small
    component resident and prefetches the next `model` component only when both fit."""
    from types import SimpleNamespace

    def weights(n):  # a module of n float32 parameters
        return torch.nn.Linear(n, 1, bias=False)

    def chain(d_size):
        big = torch.nn.Module()
        big.blocks = torch.nn.ModuleList(weights(100) for _ in range(10))
        return SimpleNamespace(model_cpu_offload_seq="a->big->c->d",
                               components={"a": weights(100), "big": big, "c": weights(100),
                                           "d": weights(d_size)})

    plan = plan_offload(chain(100), 350 * 4, device="cuda", reserve=0)
    strategy = {c.name: c.strategy for c in plan.components}
    assert strategy == {"a": "resident", "big": "blocks", "c": "model", "d": "model"}
    assert plan.component("c").prefetch == "d"  # resident a + c + d = 300 floats <= 350
    assert plan.component("c").stage_peak_bytes == 300 * 4
    assert plan.predicted_peak_bytes <= plan.budget_bytes
    assert "prefetches d" in str(plan)
    no_room = plan_offload(chain(200), 350 * 4, device="cuda", reserve=0)  # a + c + d = 400
    assert {c.name: c.strategy for c in no_room.components} == strategy
    assert all(c.prefetch is None for c in no_room.components)
    assert no_room.predicted_peak_bytes <= no_room.budget_bytes


def test_block_streaming_is_installed_where_the_block_list_is():
    """diffusers' block-level group offloading groups only the ModuleList children of the module
    it is given and loads every other child whole: installed on a T5 or CLIP text encoder (whose
    layers sit one level down) it loaded the whole encoder at once (an H200 measured 11.7 GB for
    a 7.8 GB budget). vidmem installs it on the block list's parent and moves what lies outside
    that parent (CLIP's embeddings and final norm) in and out as a stage of its own."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from vidmem.offload.apply import HostCopy, block_list_parent

    pipe = vidmem.tiny_pipeline("wan", seed=0)
    umt5 = pipe.text_encoder
    assert block_list_parent(umt5) is umt5.encoder
    # umt5's only tensor outside the encoder is the embedding the encoder shares: nothing else
    assert HostCopy(umt5, pin=False, exclude=umt5.encoder).tensors == []
    assert block_list_parent(pipe.transformer) is pipe.transformer  # blocks are direct children
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=3, num_attention_heads=2))
    text = getattr(clip, "text_model", clip)  # transformers 5 dropped the text_model level
    parent = block_list_parent(clip)
    assert parent is text.encoder
    outside = {id(t) for t in HostCopy(clip, pin=False, exclude=parent).tensors}
    expected = [text.embeddings, text.final_layer_norm]
    assert outside == {id(t) for m in expected for t in list(m.parameters()) + list(m.buffers())}


def test_a_streamed_component_moves_its_outside_part_per_stage(pipe):
    """A plan that streams the text encoder's blocks: its parts outside the block list's parent
    (a stand-in projection here) come in for its stage and leave for the next, and the frames
    are those of the unplanned pipeline."""
    expected = pipe(**CALL, generator=torch.Generator().manual_seed(0), output_type="np").frames
    te = pipe.text_encoder
    te.extra = torch.nn.Linear(4, 4)  # outside te.encoder, unused by the forward
    plan = plan_offload(pipe, sum(sizes(pipe).values()) * 2, device="cuda", reserve=1)
    streamed = plan.component("text_encoder")  # two tiny blocks: the planner would not stream
    streamed.strategy, streamed.blocks_per_group = "blocks", 1
    applied = plan.apply(pipe, simulate=True)
    got = pipe(**CALL, generator=torch.Generator().manual_seed(0), output_type="np").frames
    applied.prepare_for_decode()
    applied.remove()
    events = applied.events
    assert ("stream-blocks", "text_encoder") in events
    start = events.index(("onload", "text_encoder"))
    assert ("offload", "text_encoder") in events[start:]
    assert np.array_equal(got, expected)
