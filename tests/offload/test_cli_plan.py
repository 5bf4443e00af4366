"""`vidmem plan` as a user runs it: its --help examples, the checks it shares with `vidmem render`,
and what it prints."""

import json
import os
import subprocess
import sys

import pytest

from cli_examples import examples


def vidmem(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "vidmem", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _example_params():
    params = []
    for argv in examples("plan"):
        real_size = any(a.startswith("Wan-AI/") for a in argv)
        marks = [pytest.mark.slow] if real_size else []
        params.append(pytest.param(argv, marks=marks, id=" ".join(argv)[:60]))
    return params


def test_the_help_has_examples():
    assert len(examples("plan")) >= 4
    proc = vidmem("plan", "--help")
    assert proc.returncode == 0 and "examples:" in proc.stdout and "--allow-fp8" in proc.stdout


@pytest.mark.parametrize("argv", _example_params())
def test_every_help_example_runs_as_printed(argv, tmp_path):
    """Offline: well-known hub ids plan from the configs vidmem.shapes reproduces."""
    proc = vidmem(*argv, env={"HF_HUB_OFFLINE": "1", "VIDMEM_CACHE": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    if "--json" in argv:
        plan = json.loads(proc.stdout)
        assert plan["predicted_peak_bytes"] <= plan["budget_bytes"]
    else:
        assert "stage peak" in proc.stdout and "decode:" in proc.stdout


#: (model and size arguments, message): refused by `vidmem render` and `vidmem plan` alike
REFUSED = [
    (["--num-frames", "16"], "nearest valid: 13 or 17"),
    (["--height", "70"], "multiple of 16"),
    (["--model", "vidmem-tiny:ltx:0", "--num-frames", "12"], "makes 8k+1 frames; nearest valid: 9 or 17"),
    (["--model", "vidmem-tiny:mochi:0", "--num-frames", "9"], "makes 6k+1 frames; nearest valid: 7 or 13"),
    (["--model", "vidmem-tiny:ltx:0", "--height", "80"], "--height 80 must be a multiple of 32"),
    (["--model", "vidmem-tiny:sora:0"], "unknown tiny pipeline family 'sora'"),
    (["--model", "Wan-AI/Wan2.1-T2V-14B-Diffusers", "--num-frames", "80"], "nearest valid: 77 or 81"),
]


@pytest.mark.parametrize("args, message", REFUSED)
def test_plan_refuses_exactly_what_render_refuses(args, message, tmp_path):
    render = vidmem("render", *args, "--out", str(tmp_path / "x.mp4"))
    plan = vidmem("plan", "--budget", "8GiB", *args, env={"HF_HUB_OFFLINE": "1"})
    for proc in (render, plan):
        assert proc.returncode == 2
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert render.stderr.split(": ", 2)[-1] == plan.stderr.split(": ", 2)[-1]


@pytest.mark.parametrize("args, message", [
    (["--device", "tpu"], "--device: unknown device 'tpu': use cuda, cuda:N or cpu"),
    (["--reserve", "lots"], "--reserve: cannot parse memory size 'lots'"),
    (["--model", "missing-dir/sub/x"], "not found"),
])
def test_bad_plan_arguments_are_one_line(args, message):
    proc = vidmem("plan", "--budget", "8GiB", *args)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_plan_prints_weights_and_activations_per_stage():
    proc = vidmem("plan", "--budget", "8GiB", "--device", "cuda", "--num-frames", "9")
    assert proc.returncode == 0, proc.stderr
    header, columns, *rows = proc.stdout.splitlines()
    assert "activations simulated for 9 frames, 96x64" in header
    assert columns.split() == ["component", "weights", "activations", "strategy", "stage", "peak",
                               "detail"]
    table = [r for r in rows if r.startswith(("text_encoder", "transformer", "vae"))]
    assert len(table) == 3 and all(len(r.split()) >= 9 for r in table)  # no empty column
    assert "1 chunks" not in proc.stdout and "1 tiles" not in proc.stdout
    assert "1 chunk of" in proc.stdout  # 9 frames: 3 latent frames, one chunk


def test_plan_json_has_weights_activations_and_stage_peaks():
    proc = vidmem("plan", "--budget", "700MiB", "--device", "cuda", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    for c in plan["components"]:
        assert {"weights_bytes", "activation_bytes", "stage_peak_bytes", "strategy"} <= set(c)
        assert c["stage_peak_bytes"] <= plan["budget_bytes"]
    assert plan["decode"]["frames"] == 17 and plan["decode"]["activation_bytes"] > 0
    reserve = vidmem("plan", "--budget", "1MiB", "--device", "cuda", "--reserve", "0", "--json")
    assert reserve.returncode == 0, reserve.stderr
    assert json.loads(reserve.stdout)["reserve_bytes"] == 0


def test_too_small_a_budget_names_the_smallest_that_works():
    proc = vidmem("plan", "--budget", "100MiB", "--device", "cuda")
    assert proc.returncode == 2
    assert "the smallest budget that would work is" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_plan_simulates_the_decode_the_render_would_run(capsys):
    """The decode flags reach the plan whole (`--whole-clip-norm` used to stay behind): the
    planned decode of tiny HunyuanVideo is windowed with `off`, whole-clip statistics by default."""
    from vidmem.cli import main

    base = ["plan", "--budget", "1GiB", "--model", "vidmem-tiny:hunyuanvideo:0",
            "--num-frames", "9", "--height", "64", "--width", "96", "--json"]
    summaries = {}
    for flags in ([], ["--whole-clip-norm", "off"]):
        assert main(base + flags) == 0
        summaries[tuple(flags)] = json.loads(capsys.readouterr().out)["decode"]["summary"]
    assert "cache streaming" in summaries[()] and "whole-clip GroupNorm" in summaries[()]
    assert "window streaming" in summaries[("--whole-clip-norm", "off")]
    assert "whole-clip" not in summaries[("--whole-clip-norm", "off")]
