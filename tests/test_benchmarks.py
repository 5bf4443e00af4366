"""The benchmark runner's quick mode runs end to end, so the benchmarks never rot."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmarks_run_and_write_results(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "all.json").read_text())
    decode_cases = {r["case"] for r in results["decode"]["rows"]}
    assert decode_cases == {"diffusers", "diffusers_tiled", "vidmem_tiled"}
    assert results["decode"]["quality"]["vidmem_untiled"]["max_abs"] == 0.0
    writer_cases = {r["case"] for r in results["writer"]["rows"]}
    assert writer_cases == {"vidmem", "export_to_video", "imageio_stream"}
    assert all(r["peak_rss"] > 0 and r["seconds"] > 0 for r in results["writer"]["rows"])
    assert "| case |" in proc.stdout
