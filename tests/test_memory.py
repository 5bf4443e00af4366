"""Host memory does not grow with clip length (peak RSS from VmHWM, each render in a fresh process).

A render of 4x the frames must raise the child's peak RSS by less than 10%, and by less than half
of what the decoded clip would take as float32 (what the diffusers path holds on the host), so the
test would fail if frames were accumulated anywhere.
"""

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(2)
    import vidmem
    frames, out = int(sys.argv[1]), sys.argv[2]
    pipe = vidmem.tiny_pipeline("wan", seed=0)
    pipe.set_progress_bar_config(disable=True)
    report = vidmem.render(pipe, out, fps=16, chunk_frames=8, prompt="memory", num_frames=frames,
                           height=128, width=192, num_inference_steps=1,
                           generator=torch.Generator().manual_seed(0))
    print(json.dumps({"frames": report.frames, "peak": vidmem.peak_rss_bytes()}))
""")


def _render_peak(frames: int, out) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(frames), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_peak_rss_flat_in_clip_length(tmp_path):
    short = _render_peak(17, tmp_path / "short.mp4")
    long = _render_peak(65, tmp_path / "long.mp4")
    assert (short["frames"], long["frames"]) == (17, 65)
    growth = long["peak"] - short["peak"]
    float_clip_bytes = 65 * 128 * 192 * 3 * 4
    assert growth < 0.10 * short["peak"], (short, long)
    assert growth < 0.5 * float_clip_bytes, (growth, float_clip_bytes)
