"""Run every benchmark (each case in its own subprocess), print the tables, write JSON and plots.

    python -m benchmarks.run [--quick] [--out DIR]

``--quick`` uses the smallest sizes (the test suite runs it so the benchmarks never rot). Plots
need matplotlib (``pip install -e ".[bench]"``); without it the JSON and tables are still written.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from . import bench_decode, bench_writer

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _plot(results: dict, out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: skipping plots (pip install -e '.[bench]')",
              file=sys.stderr)
        return []
    written = []
    for name, title in (("decode", "VAE decode: peak RSS vs frames"),
                        ("writer", "MP4 writing: peak RSS vs frames")):
        rows = results[name]["rows"]
        fig, ax = plt.subplots(figsize=(6, 4))
        for case in sorted({r["case"] for r in rows}):
            pts = sorted((r["frames"], r["peak_rss"] / 2**20) for r in rows if r["case"] == case)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=case)
        ax.set_xlabel("frames")
        ax.set_ylabel("peak RSS (MiB)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        path = out / f"{name}_rss.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    quick = ["--quick"] if args.quick else []
    results = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.machine()},
        "decode": bench_decode.main(quick + ["--out", str(args.out / "decode.json")]),
        "writer": bench_writer.main(quick + ["--out", str(args.out / "writer.json")]),
    }
    plots = _plot(results, args.out)
    (args.out / "all.json").write_text(json.dumps(results, indent=2))
    print(f"\nresults: {args.out / 'all.json'}" + "".join(f"\nplot: {p}" for p in plots))
    return results


if __name__ == "__main__":
    main()
