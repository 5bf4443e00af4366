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
    assert {r["case"] for r in e2e["rows"]} == {"diffusers", "diffusers_tiled", "vidmem_untuned",
                                                 "vidmem"}
    lengths = e2e["config"]["frames"]
    # quick mode runs diffusers' tiled decode at the shortest length only (it is the slowest)
    assert len(e2e["rows"]) == 3 * len(lengths) + 1
    # the peak RSS breakdown (profiled at the shortest length): its terms add up
    assert {b["case"] for b in e2e["breakdown"]} == {"vidmem_untuned", "vidmem"}
    for b in e2e["breakdown"]:
        # the workspace term is the transient of the operator at the peak: at most the largest one
        assert b["live_tensors"] > 0 and 0 <= b["kernel_workspaces"] <= b["largest_workspace"]
        assert (b["baseline"] + b["live_tensors"] + b["kernel_workspaces"]
                + b["allocator_overhead"]) == b["peak_rss"]
    assert "Where the peak goes" in proc.stdout
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



def test_the_gpu_decode_benchmark_cases_run_on_cpu(tmp_path):
    """bench_gpu_decode's three cases (the real Wan 2.1 VAE; CUDA in the benchmark) run here on
    the CPU at a toy size, so the GPU script does not rot between GPU sessions."""
    import av

    from benchmarks import bench_gpu_decode

    rows = [bench_gpu_decode.run_case(case, 5, 32, 48, "float32", tmp_path / f"{case}.mp4",
                                      device="cpu")
            for case in bench_gpu_decode.CASES]
    for row in rows:
        assert row["frames"] == 5 and row["file_bytes"] > 0 and row["peak_rss"] > 0
        with av.open(str(tmp_path / f"{row['case']}.mp4")) as f:
            assert sum(1 for _ in f.decode(video=0)) == 5
    assert "untiled" in rows[2]["plan"] and "decode" in rows[2]["stage_seconds"]
    assert bench_gpu_decode.table(rows).count("\n") == len(rows) + 1  # header, rule, rows
