"""Every example under "examples" in every ``--help`` runs as printed (in a fresh directory,
in order, offline). Lines after a heading that does not start with "examples" (e.g. "with a
real model") are illustrations that need a download, and are not run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vidmem.cli import build_parser


def help_examples(command: str) -> list[str]:
    """The runnable example command lines of ``vidmem COMMAND --help`` (continuations joined,
    trailing comments dropped)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    epilog = sub.choices[command].epilog or ""
    lines, running = [], False
    for raw in epilog.splitlines():
        if raw and not raw.startswith(" "):
            running = raw.startswith("examples")
            continue
        text = raw.strip()
        if not running or not text or text.startswith("#"):
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + text
        else:
            lines.append(text)
    return [line.split("  #")[0].strip() for line in lines]


def run_examples(command: str, cwd: Path) -> None:
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    examples = help_examples(command)
    assert examples, f"vidmem {command} --help shows no examples"
    for line in examples:
        assert line.startswith("vidmem "), line
        proc = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"{line}\n{proc.stderr}"


@pytest.mark.parametrize("command", ["render", "decode"])
def test_help_examples_run_as_printed(command, tmp_path):
    run_examples(command, tmp_path)
