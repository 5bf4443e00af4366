"""The console script, run as a user would: in a subprocess."""

import json
import shutil
import subprocess
import sys

import pytest

from video_utils import read_video


def run(*args, check=True):
    exe = shutil.which("vidmem")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "vidmem", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def test_console_script_renders_and_reports(tmp_path):
    out = tmp_path / "clip.mp4"
    proc = run("render", "--out", str(out), "--num-frames", "9", "--chunk-frames", "4", "--json")
    report = json.loads(proc.stdout)
    assert report["frames"] == 9 and report["height"] == 64 and report["width"] == 96
    assert {"denoise", "decode", "write"} <= set(report["seconds"])
    assert report["peak_rss_bytes"] > 0
    frames, rate = read_video(out)
    assert frames.shape == (9, 64, 96, 3) and rate == 16
    # progress went to stderr: stages, denoising steps, frames decoded and written
    assert "stage: denoise" in proc.stderr and "decode" in proc.stderr and "write" in proc.stderr


def test_python_dash_m_vidmem_works(tmp_path):
    out = tmp_path / "clip.mp4"
    proc = subprocess.run([sys.executable, "-m", "vidmem", "render", "--out", str(out),
                           "--num-frames", "5", "--quiet", "--fps", "8"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "peak host memory" in proc.stdout
    assert proc.stderr == ""
    frames, rate = read_video(out)
    assert len(frames) == 5 and rate == 8


@pytest.mark.parametrize("args, message", [
    (["--num-frames", "16"], "nearest valid: 13 or 17"),
    (["--height", "70"], "multiple of 16"),
    (["--fps", "0"], "positive"),
    (["--tile-size", "-4"], "0 or more"),
    (["--out", "/nonexistent-dir/x.mp4"], "does not exist"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, message):
    argv = ["render", "--out", str(tmp_path / "x.mp4"), *args]
    proc = run(*argv, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()


def test_help_shows_examples():
    proc = run("render", "--help")
    assert "examples" in proc.stdout and "--chunk-frames" in proc.stdout
