"""Helpers of the render failure-path tests (issue #12): the tiny Wan render call, the CLI run
as a subprocess, and a writer that fails on its second chunk."""

from __future__ import annotations

import subprocess
import sys
import time

import torch

import vidmem

CALL = dict(prompt="a lighthouse at dusk", num_frames=9, height=64, width=96,
            num_inference_steps=2)


def seeded(**extra):
    return dict(CALL, generator=torch.Generator().manual_seed(0), **extra)


def cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "vidmem", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def fail_second_write(monkeypatch, error=RuntimeError("decoder exploded (simulated)"),
                      wait_written=0):
    """The second ``VideoWriter.write`` raises ``error``; with ``wait_written``, only once that many
    frames are on disk (so what the partial stream plays is known)."""
    original = vidmem.VideoWriter.write
    calls = []

    def write(self, frames):
        calls.append(1)
        if len(calls) == 2:
            deadline = time.monotonic() + 60
            while self.frames_written < wait_written and time.monotonic() < deadline:
                time.sleep(0.01)
            raise error
        return original(self, frames)

    monkeypatch.setattr(vidmem.VideoWriter, "write", write)
