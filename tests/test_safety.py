"""Never lose the denoising, never mix two clips: the failure paths of a render (issue #12).

Each test names the failure it proves safe. Renders are the tiny Wan pipeline at 64x96, a few
frames, so each takes seconds."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import vidmem
from vidmem.checkpoint import CheckpointDamaged, checkpoint_path_for, load_checkpoint
from vidmem.outputs import OutputClaim, OutputExists, OutputInUse, OutputFiles
from video_utils import read_video

CALL = dict(prompt="a lighthouse at dusk", num_frames=9, height=64, width=96,
            num_inference_steps=2)


def seeded(**extra):
    return dict(CALL, generator=torch.Generator().manual_seed(0), **extra)


def cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "vidmem", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture
def spy_denoise(tiny_pipe):
    """Counts transformer calls: a check that must come before the denoising leaves it at 0."""
    calls = []
    original = tiny_pipe.transformer.forward
    tiny_pipe.transformer.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    yield calls
    tiny_pipe.transformer.forward = original


def fail_second_write(monkeypatch, error=RuntimeError("decoder exploded (simulated)")):
    original = vidmem.VideoWriter.write
    calls = []

    def write(self, frames):
        calls.append(1)
        if len(calls) == 2:
            raise error
        return original(self, frames)

    monkeypatch.setattr(vidmem.VideoWriter, "write", write)


# --- two runs, one output ----------------------------------------------------------------------
HOLDER = """
import sys, time
from vidmem.outputs import OutputClaim
claim = OutputClaim(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_render_to_the_same_output_fails_fast_naming_the_first(tmp_path):
    out = tmp_path / "clip.mp4"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = cli("render", "--out", out, "--num-frames", "5")
        assert proc.returncode == 2
        assert f"pid {holder.pid}" in proc.stderr and "being written by another vidmem run" \
            in proc.stderr
        assert "stage: denoise" not in proc.stderr and len(proc.stderr.splitlines()) == 1
        # it touched nothing of the running one's files
        assert not out.exists() and not OutputFiles(out).latents.exists()
        assert not OutputFiles(out).partials()
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait()
    proc = cli("render", "--out", out, "--num-frames", "5", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert len(read_video(out)[0]) == 5
    assert not OutputFiles(out).lock.exists()  # released and removed at the end


def test_another_thread_cannot_claim_a_claimed_output(tiny_pipe, tmp_path, spy_denoise):
    import threading

    out = tmp_path / "clip.mp4"
    errors = []
    with OutputClaim(out):
        worker = threading.Thread(target=lambda: errors.append(
            pytest.raises(OutputInUse, vidmem.render, tiny_pipe, out, **seeded())))
        worker.start()
        worker.join()
    assert errors and "another thread" in str(errors[0].value)
    assert spy_denoise == []


# --- destination checked before denoising ------------------------------------------------------
def test_unwritable_directory_is_refused_before_denoising(tiny_pipe, tmp_path, monkeypatch,
                                                          spy_denoise):
    import tempfile

    real = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == tmp_path:
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError, match="cannot write in .*choose a writable directory"):
        vidmem.render(tiny_pipe, tmp_path / "clip.mp4", **seeded())
    assert spy_denoise == []


def test_full_directory_is_refused_before_denoising(tiny_pipe, tmp_path, monkeypatch,
                                                    spy_denoise):
    import shutil

    from vidmem import outputs

    monkeypatch.setattr(outputs.shutil, "disk_usage",
                        lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 4096))
    with pytest.raises(OSError, match="only 4.00 KiB free .*latent checkpoint alone needs"):
        vidmem.render(tiny_pipe, tmp_path / "clip.mp4", **seeded())
    assert spy_denoise == []


def test_checkpoint_that_cannot_be_saved_goes_to_the_temp_dir_and_the_decode_goes_on(
        tiny_pipe, tmp_path, monkeypatch):
    """The disk fills during the denoising: the latents go to the temp directory (said in a
    note) and the decode still runs; when that decode fails too, the kept temp checkpoint
    resumes to the same video."""
    import safetensors.torch

    real = safetensors.torch.save_file

    def disk_full_here(tensors, filename, metadata=None):
        if Path(filename).parent == tmp_path:
            raise OSError(28, "No space left on device")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full_here)
    report = vidmem.render(tiny_pipe, tmp_path / "ok.mp4", lossless=True, **seeded())
    assert report.frames == 9 and any("saved them at" in n for n in report.notes)

    fail_second_write(monkeypatch)
    out = tmp_path / "clip.mp4"
    with pytest.raises(vidmem.DecodeFailed) as e:
        vidmem.render(tiny_pipe, out, lossless=True, chunk_frames=4, **seeded())
    ckpt = e.value.checkpoint
    assert ckpt is not None and ckpt.parent != tmp_path and ckpt.exists()
    assert str(ckpt) in str(e.value)
    monkeypatch.undo()
    try:
        vidmem.decode_to_video(tiny_pipe.vae, load_checkpoint(ckpt).decode_input.latents, out,
                               lossless=True, resume=True)
    finally:
        ckpt.unlink()
    assert np.array_equal(read_video(out)[0], read_video(tmp_path / "ok.mp4")[0])


# --- nothing replaced unasked ------------------------------------------------------------------
def test_kept_latents_are_never_silently_overwritten(tiny_pipe, tmp_path, monkeypatch,
                                                     spy_denoise):
    out = tmp_path / "clip.mp4"
    fail_second_write(monkeypatch)
    with pytest.raises(vidmem.DecodeFailed):
        vidmem.render(tiny_pipe, out, chunk_frames=4, **seeded())
    monkeypatch.undo()
    ckpt = checkpoint_path_for(out)
    before = ckpt.read_bytes()
    spy_denoise.clear()
    with pytest.raises(OutputExists, match=r"kept its latents at .*vidmem decode .*--overwrite"):
        vidmem.render(tiny_pipe, out, **seeded())
    assert spy_denoise == [] and ckpt.read_bytes() == before
    proc = cli("render", "--out", out, "--num-frames", "5")
    assert proc.returncode == 2 and "vidmem decode" in proc.stderr and str(ckpt) in proc.stderr
    assert ckpt.read_bytes() == before
    report = vidmem.render(tiny_pipe, out, overwrite=True, **seeded())
    assert report.frames == 9 and not ckpt.exists()


def test_an_existing_video_needs_overwrite(tmp_path):
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"an earlier video")
    first = out.read_bytes()
    proc = cli("render", "--out", out, "--num-frames", "9", "--quiet")
    assert proc.returncode == 2 and "already exists" in proc.stderr and "--overwrite" in proc.stderr
    assert out.read_bytes() == first
    proc = cli("render", "--out", out, "--num-frames", "9", "--quiet", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert len(read_video(out)[0]) == 9


def test_a_stale_partial_is_reported_then_replaced_only_when_asked(tiny_pipe, tmp_path):
    out = tmp_path / "clip.mp4"
    writer = vidmem.VideoWriter(out, 16)
    writer.write(np.zeros((4, 64, 96, 3), np.uint8))
    while writer.frames_written < 4:  # the chunk is on disk
        time.sleep(0.01)
    writer.__exit__(RuntimeError, RuntimeError("crash"), None)  # keeps the partial stream
    partial = writer.partial_path
    assert partial.exists()
    with pytest.raises(OutputExists, match=r"partial stream .*\(4 frames play\)"):
        vidmem.render(tiny_pipe, out, **seeded())
    report = vidmem.render(tiny_pipe, out, overwrite=True, **seeded())
    assert any("replaced the partial stream" in n and "(4 frames)" in n for n in report.notes)
    assert not partial.exists() and len(read_video(out)[0]) == 9


# --- options validated before denoising; the resume command carries them ------------------------
@pytest.mark.parametrize("options, message", [
    (dict(tile_size=8), "below the wan VAE's minimum"),
    (dict(tile_size=64, tile_overlap=64), "must be smaller than tile_size"),
    (dict(fps=float("inf")), "fps must be a positive number"),
    (dict(writer_options={"codec": "nope"}), "codec 'nope' is not available"),
    (dict(writer_options={"crf": 99}), "crf must be"),
])
def test_bad_decode_and_writer_options_fail_before_denoising(tiny_pipe, tmp_path, spy_denoise,
                                                             options, message):
    with pytest.raises(ValueError, match=message):
        vidmem.render(tiny_pipe, tmp_path / "clip.mp4", **options, **seeded())
    assert spy_denoise == []
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_tile_size_exits_2_before_loading_a_saved_pipeline(tmp_path):
    model = vidmem.tiny.save_tiny_pipeline(tmp_path / "wan")
    proc = cli("render", "--model", model, "--out", tmp_path / "x.mp4", "--num-frames", "5",
               "--height", "64", "--width", "96", "--tile-size", "8")
    assert proc.returncode == 2 and "below the wan VAE's minimum" in proc.stderr
    assert "stage: load" not in proc.stderr


def test_the_resume_command_carries_every_decode_and_writer_flag(tiny_pipe, tmp_path,
                                                                 monkeypatch):
    out = tmp_path / "clip.mp4"
    fail_second_write(monkeypatch)
    with pytest.raises(vidmem.DecodeFailed) as e:
        vidmem.render(tiny_pipe, out, chunk_frames=4, tile_size=64, tile_overlap=32, fps=12.5,
                      lossless=True, **seeded(height=128, width=128))
    argv = shlex.split(e.value.resume)
    assert argv[:5] == ["vidmem", "decode", str(checkpoint_path_for(out)), "--out", str(out)]
    flags = " ".join(argv[5:])
    for flag in ("--chunk-frames 4", "--tile-size 64", "--tile-overlap 32", "--fps 12.5",
                 "--lossless"):
        assert flag in flags
    assert e.value.stage == "write" and e.value.frames_played >= 0


# --- defaults of the model ---------------------------------------------------------------------
def test_unset_pipeline_arguments_take_the_pipelines_own_defaults(tmp_path):
    import argparse

    from vidmem.cli import build_parser, cmd_render
    from vidmem.rendering import pipeline_defaults

    args = build_parser().parse_args(["render", "--out", str(tmp_path / "x.mp4"),
                                      "--model", str(tmp_path)])
    assert args.steps is None  # not 2: the pipeline decides
    args.pipeline_args, args.image = {}, None
    pipe = vidmem.tiny_pipeline("wan")
    kwargs = cmd_render.call_kwargs(args, pipe, lambda m: None)
    assert "num_inference_steps" not in kwargs
    assert pipeline_defaults(pipe, kwargs)["num_inference_steps"] == 50  # WanPipeline's default
    assert isinstance(args, argparse.Namespace)


def test_the_report_names_the_defaults_used(tmp_path):
    proc = cli("render", "--out", tmp_path / "x.mp4", "--num-frames", "5", "--quiet", "--json")
    assert proc.returncode == 0, proc.stderr
    defaults = json.loads(proc.stdout)["defaults"]
    assert defaults["num_inference_steps"] == 2 and defaults["height"] == 64  # tiny pipeline's
    assert defaults["guidance_scale"] == 5.0  # the pipeline's own


# --- corrupt latents ---------------------------------------------------------------------------
def test_a_damaged_checkpoint_is_refused(tiny_pipe, tmp_path, monkeypatch):
    out = tmp_path / "clip.mp4"
    vidmem.render(tiny_pipe, out, keep_latents=True, **seeded())
    ckpt = checkpoint_path_for(out)
    load_checkpoint(ckpt)  # intact: loads
    data = bytearray(ckpt.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the tensor data
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointDamaged, match="damaged"):
        load_checkpoint(ckpt)
    proc = cli("decode", ckpt, "--out", tmp_path / "again.mp4")
    assert proc.returncode == 2 and "is damaged" in proc.stderr
    assert not (tmp_path / "again.mp4").exists()


def test_non_finite_latents_are_refused(tiny_pipe, tmp_path):
    latents = torch.randn(1, 16, 3, 8, 12)
    latents[0, 0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="1 NaN/inf value"):
        next(vidmem.decode_latents(tiny_pipe.vae, latents))
    with pytest.raises(ValueError, match="NaN/inf"):
        vidmem.decode_to_video(tiny_pipe.vae, latents, tmp_path / "x.mp4")
    assert list(tmp_path.iterdir()) == []
    from vidmem.pipelines import DecodeInput

    ckpt = vidmem.save_checkpoint(tmp_path / "nan.latents.safetensors", DecodeInput(latents),
                                  model=None, family="wan", fps=16, frames=9)
    with pytest.raises(CheckpointDamaged, match="NaN/inf"):
        load_checkpoint(ckpt)


# --- interrupts --------------------------------------------------------------------------------
def test_ctrl_c_during_the_decode_keeps_latents_and_says_how_to_resume(tiny_pipe, tmp_path):
    out = tmp_path / "clip.mp4"

    partial = out.with_name(out.name + ".partial.ts")

    def interrupt_after_first_chunk(stage, done, total):
        # Ctrl-C reaches the main thread, where the decode runs: raise there, once the first
        # chunk is on disk
        if stage == "decode" and done > 4:
            deadline = time.monotonic() + 60
            while not (partial.exists() and partial.stat().st_size) and time.monotonic() < deadline:
                time.sleep(0.01)
            raise KeyboardInterrupt

    with pytest.raises(vidmem.DecodeInterrupted) as e:
        vidmem.render(tiny_pipe, out, chunk_frames=4, lossless=True,
                      progress=interrupt_after_first_chunk, **seeded())
    assert isinstance(e.value, KeyboardInterrupt)
    assert e.value.checkpoint == checkpoint_path_for(out) and e.value.checkpoint.exists()
    assert e.value.frames_played > 0 and e.value.partial.exists()
    assert "resume with `vidmem decode" in str(e.value) and "plays" in str(e.value)


SLOW_DECODE = """
import sys, time
import vidmem.decode.stream as stream
original = stream._decode_window
def slow(*args, **kwargs):
    time.sleep(0.4)
    return original(*args, **kwargs)
stream._decode_window = slow
from vidmem.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigint_during_the_decode_prints_the_resume_command_and_the_resume_is_exact(tmp_path):
    """A real SIGINT to the CLI mid-decode (each window slowed down so it lands there): exit
    130 with the kept latents, the partial stream's frames and the resume command on stderr;
    running that command gives the same file as an uninterrupted render."""
    out = tmp_path / "clip.mp4"
    args = ["render", "--out", str(out), "--num-frames", "17", "--chunk-frames", "4",
            "--lossless", "--tile-size", "0"]
    proc = subprocess.Popen([sys.executable, "-c", SLOW_DECODE, *args], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    partial = out.with_name(out.name + ".partial.ts")
    deadline = time.monotonic() + 240
    while not (partial.exists() and partial.stat().st_size > 0):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    line = stderr.strip().splitlines()[-1]
    assert "interrupted during the decode" in line and "latents are kept at" in line
    assert "plays" in line and "Traceback" not in stderr
    resume = line.split("resume with `")[1].rstrip("`")
    assert "--lossless" in resume and "--chunk-frames 4" in resume
    argv = shlex.split(resume)
    assert argv[0] == "vidmem"
    done = cli(*argv[1:], "--quiet")
    assert done.returncode == 0, done.stderr
    assert checkpoint_path_for(out).exists()  # `vidmem decode` keeps the latents it was given
    reference = tmp_path / "reference.mp4"
    ref = cli(*[a if a != str(out) else str(reference) for a in args], "--quiet")
    assert ref.returncode == 0, ref.stderr
    assert np.array_equal(read_video(out)[0], read_video(reference)[0])


# --- clear messages ----------------------------------------------------------------------------
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
    proc = cli("decode", checkpoint_path_for(out), "--out", tmp_path / "y.mp4", "--model",
               tmp_path / "nowhere")
    assert proc.returncode == 2 and "not found" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_write_failure_is_reported_as_a_write_failure(tiny_pipe, tmp_path, monkeypatch):
    from vidmem.io import writer

    def broken(self, container, stream, chunk):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.VideoWriter, "_encode_chunk", broken)
    with pytest.raises(vidmem.DecodeFailed, match="writing the video failed") as e:
        vidmem.render(tiny_pipe, tmp_path / "clip.mp4", chunk_frames=4, **seeded())
    assert e.value.stage == "write" and e.value.checkpoint.exists()


# --- logs a machine can read -------------------------------------------------------------------
def test_progress_on_a_pipe_is_plain_lines(tmp_path):
    proc = cli("render", "--out", tmp_path / "x.mp4", "--num-frames", "9", "--chunk-frames", "4")
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "\x1b[" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert any(line.startswith("denoise: step 2/2") for line in lines)
    assert any(line.startswith("decode+write: decoded 9, written 9 of 9 frames") for line in lines)
    assert len([line for line in lines if line.startswith("decode+write")]) <= 3


def test_warnings_are_one_line(capsys):
    from vidmem.cli import _one_line_warnings

    _one_line_warnings(UserWarning("first line\nsecond line"), UserWarning, "x.py", 3)
    assert capsys.readouterr().err == "vidmem: warning: first line\n"


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
