"""bench_plan's quick run: the simulated-vs-measured table it prints and saves stays within 10%."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # bench_plan's quick run: minutes
def test_quick_bench_plan_rows_within_ten_percent(tmp_path):
    out = tmp_path / "plan.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_plan", "--quick", "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    rows = result["cpu"]
    families = {r["family"] for r in rows}
    assert families == {"wan", "cogvideox", "ltx"}
    for family in families:
        stages = {r["stage"] for r in rows if r["family"] == family}
        assert {"text_encoder", "transformer"} <= stages and any("vae" in s for s in stages)
        shapes = {r["shape"] for r in rows if r["family"] == family and r["stage"] == "transformer"}
        assert len(shapes) == 2
    assert all(abs(r["ratio"] - 1) <= 0.10 for r in rows), rows
    assert "| model | stage | shape" in proc.stdout
    assert all(20 < row["latent_psnr_db"] < float("inf") for row in result["fp8"]["rows"])
