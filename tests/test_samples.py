"""The samples are runnable documentation: run each one as a user would."""

import subprocess
import sys
from pathlib import Path

import pytest

from video_utils import read_video

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.mark.parametrize("script, frames", [("render_tiny.py", 17), ("decode_latents.py", 17),
                                            ("render_with_budget.py", 17),
                                            ("write_your_own_frames.py", 60),
                                            ("render_other_family.py", 17),
                                            ("render_distributed.py", 9)])
def test_sample_runs_and_writes_a_video(tmp_path, script, frames):
    out = tmp_path / "out.mp4"
    proc = subprocess.run([sys.executable, str(SAMPLES / script), str(out)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    video, _ = read_video(out)
    assert len(video) == frames
