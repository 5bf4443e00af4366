"""Shared benchmark plumbing: run one case in a fresh interpreter, save results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_child(module: str, argv: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``python -m module argv`` in a fresh process (so its peak RSS is its own), with ``env``
    added to the environment, and return the JSON object it prints last."""
    proc = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(argv)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def save_json(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))


def plot_rss_vs_frames(rows: list[dict], title: str, path: Path) -> Path | None:
    """Line plot of peak RSS (MiB) against frames, one line per ``case``; ``None`` (and no file)
    when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for case in sorted({r["case"] for r in rows}):
        pts = sorted((r["frames"], r["peak_rss"] / 2**20) for r in rows if r["case"] == case)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=case)
    ax.set_xlabel("frames")
    ax.set_ylabel("peak RSS (MiB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
