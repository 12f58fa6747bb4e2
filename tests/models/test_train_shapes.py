"""The shapes model's training script, run end to end at toy size (CI never trains the real model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from prunesched.models.shapes.judge import HEADS, load_judge

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "train_shapes.py"
TOY = ["--images", "64", "--vae-steps", "2", "--judge-steps", "2", "--unet-steps", "3", "--batch", "4"]


def train(tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = ["--work", str(tmp_path / "work"), "--out", str(out), "--log", str(tmp_path / "log.json"), "--plot", str(tmp_path / "loss.png")]
    subprocess.run([sys.executable, str(SCRIPT), *TOY, *paths], check=True, capture_output=True, timeout=600)


def test_the_script_ships_a_loadable_pipeline_and_judge_and_a_rerun_resumes_to_the_same_files(tmp_path):
    train(tmp_path)
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "out" / "pipeline")
    image = pipe("a small red circle on a striped blue background", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (64, 64, 3)
    assert set(load_judge(tmp_path / "out" / "judge.safetensors")(torch.rand(1, 3, 64, 64))) == set(HEADS)
    log = json.loads((tmp_path / "log.json").read_text())
    assert {stage: len(curve) for stage, curve in log["curves"].items()} == {"vae": 1, "judge": 1, "unet": 1}
    assert (tmp_path / "loss.png").stat().st_size > 0
    shipped = load_file(tmp_path / "out" / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors")
    train(tmp_path)  # every stage's checkpoint is complete, so nothing trains again
    again = load_file(tmp_path / "out" / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors")
    assert all((shipped[k] == again[k]).all() for k in shipped)
