"""The benchmark runner's quick mode runs end to end, so the benchmarks never rot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # every benchmark's quick run: minutes
def test_quick_benchmarks_run_and_write_results(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "all.json").read_text())
    decode_cases = {r["case"] for r in results["decode"]["rows"]}
    assert decode_cases == {"diffusers", "diffusers_tiled", "vidmem_tiled", "vidmem_tiled_mmap4m"}
    assert results["decode"]["quality"]["vidmem_untiled"]["max_abs"] == 0.0
    writer_cases = {r["case"] for r in results["writer"]["rows"]}
    assert writer_cases == {"vidmem", "export_to_video", "imageio_stream"}
    assert all(r["peak_rss"] > 0 and r["seconds"] > 0 for r in results["writer"]["rows"])
    assert "| case |" in proc.stdout

    e2e = results["e2e"]
    assert {r["case"] for r in e2e["rows"]} == {"diffusers", "diffusers_tiled", "vidmem"}
    lengths = e2e["config"]["frames"]
    # quick mode runs diffusers' tiled decode at the shortest length only (it is the slowest)
    assert len(e2e["rows"]) == 2 * len(lengths) + 1
    for r in e2e["rows"]:
        assert r["frames"] == r["requested_frames"] and r["file_bytes"] > 0
        assert r["peak_rss"] > 0 and r["seconds"] > 0
    # Memory does not depend on machine load, so it is checked (with slack for allocator noise;
    # the quick run's targets are <= 0.5x and flat within 10%). Wall time is too noisy here.
    longest = str(lengths[-1])
    assert e2e["ratios"]["rss_vidmem_over_diffusers"][longest] < 0.6
    growth = e2e["ratios"]["rss_growth_long_over_short"]
    assert growth["vidmem"] < 1.15 and growth["diffusers"] > 1.5
    assert (tmp_path / "e2e.json").exists()
    assert "End to end" in proc.stdout

    # per-family decode quality at equal tile geometry
    rows = {r["family"]: r for r in results["quality"]["rows"]}
    assert set(rows) >= {"wan", "cogvideox", "mochi", "hunyuanvideo", "hunyuanvideo15", "ltx",
                         "svd", "animatediff"}
    for family in ("wan", "cogvideox", "mochi", "hunyuanvideo15", "animatediff"):
        assert rows[family]["chunked_max_abs"] <= 1e-4, family  # exact streaming
    for r in rows.values():
        if "diffusers_tiled_psnr" in r:
            assert r["vidmem_tiled_psnr"] >= r["diffusers_tiled_psnr"], r["family"]
    assert rows["svd"]["chunked_psnr"] > rows["svd"]["diffusers_chunked_psnr"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "e2e_rss.png").stat().st_size > 0

