"""The README's "Several GPUs or machines" commands run as written (CPU, gloo, 2 processes)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from video_utils import read_video

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Several GPUs or machines"


def bash_blocks(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(section)
    end = text.find("\n## ", start + len(section))
    return re.findall(r"```bash\n(.*?)```", text[start:end if end > 0 else None], re.S)


@pytest.mark.slow  # four torchrun jobs and a render: ~2 min on 2 busy cores
def test_scale_out_commands_run_as_written(tmp_path):
    blocks = bash_blocks(SECTION)
    assert len(blocks) == 3
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(blocks)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=1500,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("identical") == 2
    clips = sorted(p.name for p in (tmp_path / "clips").glob("*.mp4"))
    assert clips == ["0000-a-red-fox-in-snow.mp4", "0001-a-lighthouse-at-dusk.mp4"]
    assert len(read_video(tmp_path / "clips" / clips[1])[0]) == 5
    assert len(read_video(tmp_path / "split_api.mp4")[0]) == 9
