"""What the CLI says: one-line errors (bad models, an offline hub id, a missing model path), one-line
warnings, plain progress lines on a pipe, and help that names every flag's default.

Renders are the tiny Wan pipeline at 64x96, a few frames, so each takes seconds."""

from __future__ import annotations

import os
import time

import pytest

import vidmem
from render_helpers import cli, seeded
from vidmem.files import ClipFiles


# --- clear messages -------------------------------------------------------------------------------
@pytest.mark.parametrize("setup, args, message", [
    (lambda d: (d / "m").mkdir() or (d / "m" / "model_index.json").write_text("{oops"),
     ["--model", "{d}/m"], "model_index.json is not valid JSON"),
    (lambda d: (d / "m").mkdir() or (d / "m" / "model_index.json").write_text('{"vae": 1}'),
     ["--model", "{d}/m"], 'has no "_class_name"'),
    (None, ["--model", "vidmem-tiny:wan:abc"], "the seed must be a whole number"),
    (None, ["--model", "vidmem-tiny:nope:0"], "unknown tiny pipeline family 'nope'"),
    (None, ["--out", ""], "the output path is empty"),
    (None, ["--fps", "inf"], "positive finite number"),
    (None, ["--model", "{d}/missing"], "not found"),
])
def test_clear_one_line_errors(tmp_path, setup, args, message):
    if setup:
        setup(tmp_path)
    argv = ["render", "--out", str(tmp_path / "x.mp4"), *[a.format(d=tmp_path) for a in args]]
    proc = cli(*argv)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_an_offline_hub_id_fails_in_seconds(tmp_path):
    from vidmem.loading import hub_unreachable_reason

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = cli("render", "--model", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "--out",
               tmp_path / "x.mp4", env=env)
    assert proc.returncode == 2 and "pass a local directory or connect" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    start = time.monotonic()  # no offline flag: the connection attempt itself is bounded
    reason = hub_unreachable_reason("some-org/not-cached-model")
    assert time.monotonic() - start < 5
    if reason is not None:  # no network here (as in CI); with a network the hub answers
        assert "pass a local directory" in reason


def test_decode_with_a_missing_model_path_is_one_line(tiny_pipe, tmp_path):
    out = tmp_path / "clip.mp4"
    vidmem.render(tiny_pipe, out, keep_latents=True, **seeded())
    proc = cli("decode", ClipFiles(out).latents, "--out", tmp_path / "y.mp4", "--model",
               tmp_path / "nowhere")
    assert proc.returncode == 2 and "not found" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_warnings_are_one_line(capsys):
    from vidmem.cli import _one_line_warnings

    _one_line_warnings(UserWarning("first line\nsecond line"), UserWarning, "x.py", 3)
    assert capsys.readouterr().err == "vidmem: warning: first line\n"


# --- logs a machine can read ----------------------------------------------------------------------
def test_progress_on_a_pipe_is_plain_lines(tmp_path):
    proc = cli("render", "--out", tmp_path / "x.mp4", "--num-frames", "9", "--chunk-frames", "4")
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "\x1b[" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert any(line.startswith("denoise: step 2/2") for line in lines)
    assert any(line.startswith("decode+write: decoded 9, written 9 of 9 frames") for line in lines)
    assert len([line for line in lines if line.startswith("decode+write")]) <= 3


# --- help -----------------------------------------------------------------------------------------
def test_every_flag_has_help_that_names_its_default():
    from vidmem.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if not action.option_strings or action.dest == "help":
                continue
            flag = action.option_strings[-1]
            assert action.help, f"vidmem {name} {flag} has no help"
            assert "default" in action.help or "required" in action.help, \
                f"vidmem {name} {flag}: help does not say its default"


def test_a_negative_budget_and_a_zero_budget_get_the_same_answer():
    """`--budget -1` used to say "cannot parse" while `--budget 0` said "must be positive"."""
    from vidmem.cli.errors import UsageError
    from vidmem.cli.options import parse_budget

    for text in ("-1", "0", "-2GiB", "0MiB"):
        with pytest.raises(UsageError, match="a memory size must be positive"):
            parse_budget(text)
    with pytest.raises(UsageError, match="cannot parse memory size 'lots'"):
        parse_budget("lots")
