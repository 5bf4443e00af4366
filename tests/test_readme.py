"""The README's code runs as written: every ``python`` and ``bash`` block is executed here, in
a fresh directory, with the installed ``vidmem`` (the "Several GPUs or machines" commands together,
as one script: they build on each other).

The README's first two commands (install + render, install + tests) are the exception: their
installs are what ``.ci/run`` does in its fresh venv and the test command is this suite itself,
so here only the render part of the first runs; a test checks that ``.ci/run`` performs the same
steps.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from video_utils import read_video

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```$", README, flags=re.S | re.M)
INSTALL = "pip install torch==2.13.0 && "
SCALE_OUT = "## Several GPUs or machines"


def section_blocks(section: str) -> list[str]:
    start = README.index(section)
    end = README.find("\n## ", start + len(section))
    return re.findall(r"```bash\n(.*?)```", README[start:end if end > 0 else None], re.S)


def runnable(lang: str) -> list[str]:
    return [body for kind, body in BLOCKS if kind == lang]


def env_with_venv() -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))


def test_every_block_is_python_bash_or_a_text_figure():
    assert BLOCKS, "no code blocks found"
    assert {kind for kind, _ in BLOCKS} <= {"python", "bash", "text"}


def test_readme_opens_with_the_install_and_test_commands_that_ci_runs():
    first, second = runnable("bash")[:2]
    assert first.startswith(INSTALL) and "pip install -e ." in first and \
        "vidmem render --out clip.mp4" in first
    assert second.startswith(INSTALL) and 'pip install -e ".[test]"' in second and \
        second.strip().endswith("python -m pytest -q")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m venv" in ci or "python3 -m venv" in ci
    for step in ("pip install -q torch==2.13.0", 'pip install -q -e ".[test]"',
                 "python -m pytest -q"):
        assert step in ci, step


@pytest.mark.slow  # several renders (one of 81 frames): minutes
@pytest.mark.parametrize("index", range(len(runnable("bash"))))
def test_bash_block_runs(index, tmp_path):
    script = runnable("bash")[index]
    if index == 1:
        pytest.skip("the test command: this suite is its run (.ci/run executes it)")
    if index == 0:
        script = script.split("&&")[-1].strip()  # the render; the installs are .ci/run's
    if script in section_blocks(SCALE_OUT):
        pytest.skip("a scale-out command: test_scale_out_commands_run_as_written runs them")
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env_with_venv(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{script}\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.slow  # renders, a plan and a decode
@pytest.mark.parametrize("index", range(len(runnable("python"))))
def test_python_block_runs(index, tmp_path):
    proc = subprocess.run([sys.executable, "-c", runnable("python")[index]], cwd=tmp_path,
                          env=env_with_venv(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow  # four torchrun jobs and a render: ~2 min on 2 busy cores
def test_scale_out_commands_run_as_written(tmp_path):
    blocks = section_blocks(SCALE_OUT)
    assert len(blocks) == 3
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(blocks)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=1500,
                          env={**env_with_venv(), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("identical frames") == 2
    clips = sorted(p.name for p in (tmp_path / "clips").glob("*.mp4"))
    assert clips == ["0000-a-red-fox-in-snow.mp4", "0001-a-lighthouse-at-dusk.mp4"]
    assert len(read_video(tmp_path / "clips" / clips[1])[0]) == 5
    assert len(read_video(tmp_path / "split_api.mp4")[0]) == 9
