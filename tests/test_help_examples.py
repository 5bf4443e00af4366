"""Every example under "examples" in ``vidmem render --help`` and ``vidmem decode --help``
runs as printed (in a fresh directory, in order, offline; ``vidmem plan``'s are run by
offload/test_cli_plan.py)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cli_examples import examples


@pytest.mark.slow  # every example of --help, several renders: minutes
@pytest.mark.parametrize("command", ["render", "decode"])
def test_help_examples_run_as_printed(command, tmp_path):
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    argvs = examples(command)
    assert argvs, f"vidmem {command} --help shows no examples"
    for argv in argvs:
        line = shlex.join(["vidmem", *argv])
        proc = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"{line}\n{proc.stderr}"
