"""`vidmem render --model DIR`: the real loading path (save_pretrained, then from_pretrained)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import vidmem
from video_utils import read_video


def cli(*args):
    return subprocess.run([sys.executable, "-m", "vidmem", *args], capture_output=True, text=True,
                          timeout=300)


#: per family: (frames, extra CLI args). Windowed families (LTX-Video's non-causal decoder, SVD,
#: HunyuanVideo) equal the pipeline's single-call decode only in one window: --chunk-frames 1000.
FAMILIES = {
    "wan": (9, []),
    "wan-i2v": (9, []),
    "cogvideox": (9, []),
    "ltx": (9, ["--chunk-frames", "1000"]),
    "mochi": (7, []),
    "hunyuanvideo": (9, ["--chunk-frames", "1000"]),
    "hunyuanvideo15": (9, []),
    "svd": (6, ["--chunk-frames", "1000"]),
    "animatediff": (6, []),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_render_from_a_saved_pipeline_equals_its_own_output(family, tmp_path):
    """save_pretrained -> `vidmem render --model DIR --lossless` gives the pipeline's own
    output_type="np" frames (within 1 of 255): the per-family denormalization is exact."""
    from diffusers import DiffusionPipeline
    from diffusers.utils import load_image
    from PIL import Image

    model_dir = tmp_path / family
    vidmem.tiny_pipeline(family, seed=0).save_pretrained(model_dir)
    frames, extra = FAMILIES[family]
    pipe = DiffusionPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(num_frames=frames, height=64, width=96, num_inference_steps=2,
                  generator=torch.Generator().manual_seed(3))
    args = ["--num-frames", str(frames), "--height", "64", "--width", "96", "--steps", "2",
            "--seed", "3"]
    if family in ("svd", "wan-i2v"):
        image = tmp_path / "first.png"
        Image.fromarray(np.random.RandomState(0).randint(0, 255, (64, 96, 3), np.uint8)).save(image)
        kwargs["image"] = load_image(str(image))
        args += ["--image", str(image)]
    if family != "svd":
        kwargs["prompt"] = "a tiny boat"
        args += ["--prompt", "a tiny boat"]
    torch.manual_seed(3)  # as the CLI does: decoders that inject noise use the global RNG
    expected = np.asarray(pipe(output_type="np", **kwargs).frames[0])
    out = tmp_path / "clip.mp4"
    proc = cli("render", "--model", str(model_dir), *args, *extra, "--lossless", "--out",
               str(out), "--quiet", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["frames"] == frames and (report["height"], report["width"]) == (64, 96)
    written, _ = read_video(out)
    assert written.shape == expected.shape
    assert np.abs(written.astype(int) - np.round(expected * 255).astype(int)).max() <= 1
    assert not (tmp_path / "clip.latents.safetensors").exists()


def test_unsupported_pipeline_and_missing_model_fail_before_loading(tmp_path):
    fake = tmp_path / "sd"
    fake.mkdir()
    (fake / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    proc = cli("render", "--model", str(fake), "--out", str(tmp_path / "x.mp4"))
    assert proc.returncode == 2
    assert "StableDiffusionPipeline is not a video pipeline" in proc.stderr
    proc = cli("render", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "x.mp4"))
    assert proc.returncode == 2 and "not found" in proc.stderr
    proc = cli("render", "--out", str(tmp_path / "x.mp4"), "--arg", "oops")
    assert proc.returncode == 2 and "expected NAME=VALUE" in proc.stderr


def test_plan_from_configs_alone_with_real_wan_shapes(tmp_path):
    """`vidmem plan --model DIR` reads configs only: a Wan 2.1 1.3B directory with no weight
    files plans in seconds, with the real component sizes."""
    from vidmem.shapes import write_config_only_pipeline

    model = write_config_only_pipeline(tmp_path / "wan-1.3b", "1.3B")
    assert not list(model.rglob("*.safetensors"))
    proc = cli("plan", "--model", str(model), "--dtype", "bf16", "--budget", "8GiB", "--device",
               "cuda", "--num-frames", "81", "--height", "480", "--width", "832", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    comps = {c["name"]: c for c in plan["components"]}
    assert list(comps) == ["text_encoder", "transformer", "vae"]  # model_cpu_offload_seq order
    assert 2.5 * 2**30 < comps["transformer"]["weights_bytes"] < 2.8 * 2**30  # 1.3B in bf16
    assert comps["text_encoder"]["weights_bytes"] > 10 * 2**30  # umt5-xxl: too big for 8 GiB
    # simulated at 81 frames of 480x832: one pass holds about 1.5 GiB of activations
    assert 1 * 2**30 < comps["transformer"]["activation_bytes"] < 3 * 2**30
    assert plan["activation_source"] == "simulated"
    assert comps["text_encoder"]["strategy"] == "blocks"
    assert comps["vae"]["strategy"] == "resident"
    assert plan["predicted_peak_bytes"] <= 8 * 2**30
    assert plan["decode"]["frames"] == 81 and plan["decode"]["width"] == 832
    proc = cli("plan", "--model", str(tmp_path / "nope"), "--budget", "8GiB")
    assert proc.returncode == 2 and "not found" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--model", "vidmem-tiny:ltx:0", "--num-frames", "12"], "makes 8k+1 frames; nearest valid: 9 or 17"),
    (["--model", "vidmem-tiny:mochi:0", "--num-frames", "9"], "makes 6k+1 frames; nearest valid: 7 or 13"),
    (["--model", "vidmem-tiny:ltx:0", "--height", "80"], "--height 80 must be a multiple of 32"),
    (["--model", "vidmem-tiny:svd:0"], "StableVideoDiffusionPipeline needs --image PATH"),
    (["--model", "vidmem-tiny:svd:0", "--image", "missing.png"], "--image 'missing.png': no such file"),
    (["--model", "vidmem-tiny:sora:0"], "unknown tiny pipeline family 'sora'"),
])
def test_family_specific_errors_before_loading(args, message, tmp_path):
    proc = cli("render", *args, "--out", str(tmp_path / "x.mp4"))
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()
