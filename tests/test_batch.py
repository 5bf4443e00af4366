"""Batch renders: prompts files, deterministic names and seeds, division among ranks, the
manifest, failures that stay with their clip, and resuming after a kill."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import vidmem
import dist_workers
from dist_helpers import TORCHRUN, run_ranks
from video_utils import read_video
from vidmem import PromptsFileError
from vidmem.batch import (ClipSpec, Manifest, assign_clips, parse_prompts,
                          render_batch)

PROMPTS = """a red fox running through snow
# comments and blank lines are skipped

{"prompt": "a lighthouse at dusk", "seed": 7}
a paper boat on a pond
{"prompt": "a cat on grass", "name": "cat", "num_frames": 5}
"""
FLAGS = ["--num-frames", "9", "--chunk-frames", "4", "--lossless"]


def render_alone(pipe, path, prompt, seed, num_frames=9):
    """What `vidmem render --prompt P --seed S --num-frames N --lossless` renders (with one
    thread, like each rank: on a loaded 2-core machine two threads are several times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        vidmem.render(pipe, path, fps=16, chunk_frames=4, lossless=True, prompt=prompt,
                      num_frames=num_frames, height=64, width=96, num_inference_steps=2,
                      generator=torch.Generator().manual_seed(seed))
    finally:
        torch.set_num_threads(threads)
    return read_video(path)[0]


def test_prompts_file_names_seeds_and_settings():
    clips = parse_prompts(PROMPTS, base_seed=100, source="p.txt")
    assert [c.name for c in clips] == ["0000-a-red-fox-running-through-snow",
                                       "0001-a-lighthouse-at-dusk", "0002-a-paper-boat-on-a-pond",
                                       "cat"]
    assert [c.seed for c in clips] == [100, 7, 102, 103]  # base + index unless given
    assert [c.line for c in clips] == [1, 4, 5, 6]
    assert clips[3].pipeline_args() == {"prompt": "a cat on grass", "num_frames": 5}
    assert parse_prompts(PROMPTS, base_seed=100) == parse_prompts(PROMPTS, base_seed=100)


@pytest.mark.parametrize("text, message", [
    ("ok\n{\"prompt\": \"x\",}\n", "p.txt line 2: not valid JSON"),
    ("{\"prompt\": \"x\", \"fps\": 3}", "p.txt line 1: unknown key 'fps'"),
    ("{\"prompt\": \"x\", \"seed\": \"1\"}", "p.txt line 1: 'seed' must be an integer"),
    ("{\"prompt\": \"x\", \"num_frames\": 0}", "line 1: 'num_frames' must be positive"),
    ("{\"prompt\": \"a\", \"name\": \"x\"}\n{\"prompt\": \"b\", \"name\": \"x\"}",
     "p.txt line 2: name 'x' is already used on line 1"),
    ("{\"prompt\": \"a\", \"name\": \"../x\"}", "line 1: name '../x' must be"),
    ("# only a comment\n\n", "p.txt: no prompts"),
])
def test_prompts_file_errors_name_the_line(text, message):
    with pytest.raises(PromptsFileError, match=re.escape(message)):
        parse_prompts(text, source="p.txt")


def test_clips_are_dealt_longest_first_to_the_least_loaded_rank():
    clips = [ClipSpec(index=i, name=f"c{i}", seed=i, line=i + 1, num_frames=f, height=64,
                      width=96) for i, f in enumerate([81, 17, 17, 17, 17, 49])]
    shares = assign_clips(clips, 2)
    assert [[c.index for c in s] for s in shares] == [[0, 3], [1, 2, 4, 5]]  # 98 vs 100 frames
    assert shares == assign_clips(list(reversed(clips)), 2)  # deterministic
    assert [len(s) for s in assign_clips(clips[:1], 3)] == [1, 0, 0]


def test_manifest_updates_merge_atomically(tmp_path):
    m = Manifest(tmp_path)
    m.update({"a": {"status": "pending", "seed": 1}}, header={"ranks": 2})
    m.update({"a": {"status": "done"}, "b": {"status": "failed", "error": "x"}})
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["ranks"] == 2 and data["clips"]["a"] == {"status": "done", "seed": 1}
    assert data["clips"]["b"]["error"] == "x"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(ValueError, match="not a readable manifest"):
        m.read()


def test_a_failing_clip_fails_alone_and_rerun_renders_it(tiny_pipe, tmp_path):
    clips = parse_prompts("a red fox\na boat\na cat\n")
    broken = {"0001-a-boat"}

    def call_for(clip):
        if clip.name in broken:
            raise RuntimeError("simulated pipeline failure")
        return dict(prompt=clip.prompt, num_frames=5, height=64, width=96,
                    num_inference_steps=2, generator=torch.Generator().manual_seed(clip.seed))

    report = render_batch(tiny_pipe, clips, tmp_path, lossless=True, call_for=call_for)
    status = {c["name"]: (c["status"], c["action"]) for c in report.clips}
    assert status == {"0000-a-red-fox": ("done", "rendered"),
                      "0001-a-boat": ("failed", "failed"), "0002-a-cat": ("done", "rendered")}
    assert "RuntimeError: simulated pipeline failure" in report.clips[1]["error"]
    assert "1 failed" in str(report) and not (tmp_path / "0001-a-boat.mp4").exists()
    broken.clear()
    report = render_batch(tiny_pipe, clips, tmp_path, lossless=True, call_for=call_for)
    assert [c["action"] for c in report.clips] == ["already complete", "rendered",
                                                   "already complete"]
    assert not report.failed


def test_batch_flag_errors_are_one_line(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox\n{\"prompt\": \"a cat\", \"num_frames\": 8}\n")
    for args, message in [
        (["--prompts", str(prompts)], "--prompts FILE needs --out-dir DIR"),
        (["--prompts", str(prompts), "--out-dir", str(tmp_path), "--out", "x.mp4"], "drop --out"),
        (["--out-dir", str(tmp_path)], "--out-dir goes with --prompts"),
        ([], "--out PATH is required"),
        (["--prompts", str(prompts), "--out-dir", str(tmp_path / "o")],
         f"{prompts} line 2: --num-frames"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "vidmem", "render", *args],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_batch_api_over_two_ranks_equals_clips_rendered_alone(tiny_pipe, tmp_path):
    """render_batch over the world group of 2 gloo ranks: 4 clips; a clip of each rank equals
    the clip rendered alone."""
    (tmp_path / "clips").mkdir()
    prompts = "a red fox\n{\"prompt\": \"a lighthouse\", \"seed\": 7}\na boat\na cat\n"
    run_ranks(dist_workers.batch_ranks, 2, str(tmp_path), prompts)
    r0, r1 = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert r0["ranks"] == 2 and r0["failed"] == r1["failed"] == 0
    assert r0["clips"] == r1["clips"]  # every rank reports every clip
    assert sorted(c["rank"] for c in r0["clips"]) == [0, 0, 1, 1]
    compared = set()
    for clip in r0["clips"]:
        assert clip["status"] == "done" and clip["action"] == "rendered"
        frames, _ = read_video(clip["file"])
        assert frames.shape == (9, 64, 96, 3)
        if clip["rank"] in compared:
            continue  # one clip per rank here; the slow CLI test compares all four
        compared.add(clip["rank"])
        alone = render_alone(tiny_pipe, tmp_path / f"alone-{clip['name']}.mp4", clip["prompt"],
                             clip["seed"])
        assert np.array_equal(frames, alone), clip["name"]


@pytest.mark.slow  # ~70 s on 2 busy cores: two ranks start, then 4 clips rendered alone
def test_batch_over_two_ranks_equals_clips_rendered_alone(tiny_pipe, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox in snow\n{\"prompt\": \"a lighthouse\", \"seed\": 7}\n"
                       "a paper boat\n{\"prompt\": \"a cat\", \"name\": \"cat\"}\n")
    out = tmp_path / "clips"
    proc = subprocess.run([sys.executable, *TORCHRUN, "--nproc-per-node", "2", "-m", "vidmem",
                           "render", "--prompts", str(prompts), "--out-dir", str(out), *FLAGS],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "batch: 4 clips" in proc.stdout and "4 done (4 rendered), 0 failed" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())["clips"]
    assert {c["rank"] for c in manifest.values()} == {0, 1}  # both ranks rendered clips
    expected = {"0000-a-red-fox-in-snow": ("a red fox in snow", 0),
                "0001-a-lighthouse": ("a lighthouse", 7), "0002-a-paper-boat": ("a paper boat", 2),
                "cat": ("a cat", 3)}
    assert set(manifest) == set(expected)
    for name, (prompt, seed) in expected.items():
        assert manifest[name]["status"] == "done" and manifest[name]["seed"] == seed
        clip, rate = read_video(out / f"{name}.mp4")
        alone = render_alone(tiny_pipe, tmp_path / f"alone-{name}.mp4", prompt, seed)
        assert clip.shape == (9, 64, 96, 3) and rate == 16
        assert np.array_equal(clip, alone), name


KILL_AT_CLIP_2 = """
import os, signal, sys
import vidmem
from vidmem.cli import main

write = vidmem.VideoWriter.write
def write_or_die(self, frames):
    if self.path.name.startswith("0002-"):
        os.kill(os.getpid(), signal.SIGKILL)  # killed mid-decode, after denoising
    return write(self, frames)
vidmem.VideoWriter.write = write_or_die
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # ~65 s on 2 busy cores: a killed one-process run, then two ranks resume
def test_killed_batch_resumes_skipping_finished_clips(tiny_pipe, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\na lighthouse\na paper boat\na cat\n")
    out = tmp_path / "clips"
    argv = ["render", "--prompts", str(prompts), "--out-dir", str(out), "--quiet", *FLAGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", KILL_AT_CLIP_2, *argv], capture_output=True,
                            text=True, timeout=300, env=env)
    assert killed.returncode == -9, killed.stderr
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    assert set(done) == {"0000-a-red-fox.mp4", "0001-a-lighthouse.mp4"}
    assert (out / "0002-a-paper-boat.latents.safetensors").exists()
    before = json.loads((out / "manifest.json").read_text())["clips"]
    assert before["0002-a-paper-boat"]["status"] == "running"
    assert before["0003-a-cat"]["status"] == "pending"

    proc = subprocess.run([sys.executable, *TORCHRUN, "--nproc-per-node", "2", "-m", "vidmem",
                           *argv], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = json.loads((out / "manifest.json").read_text())["clips"]
    assert {n: c["action"] for n, c in after.items()} == {
        "0000-a-red-fox": "already complete", "0001-a-lighthouse": "already complete",
        "0002-a-paper-boat": "resumed from latents", "0003-a-cat": "rendered"}
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("0000-*.mp4")} == {
        "0000-a-red-fox.mp4": done["0000-a-red-fox.mp4"]}  # untouched
    assert not (out / "0002-a-paper-boat.latents.safetensors").exists()
    resumed, _ = read_video(out / "0002-a-paper-boat.mp4")
    assert np.array_equal(resumed, render_alone(tiny_pipe, tmp_path / "alone.mp4",
                                                "a paper boat", 2))
