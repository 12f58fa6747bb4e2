"""The shapes DiT's training script, run end to end at toy size (CI never trains the real model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from diffusers import StableDiffusion3Pipeline
from safetensors.torch import load_file

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "train_shapes_dit.py"


def train(tmp_path: Path) -> None:
    paths = [
        "--work",
        str(tmp_path / "work"),
        "--out",
        str(tmp_path / "out"),
        "--log",
        str(tmp_path / "log.json"),
        "--plot",
        str(tmp_path / "loss.png"),
    ]
    subprocess.run(
        [sys.executable, str(SCRIPT), "--images", "64", "--steps", "3", "--batch", "4", *paths],
        check=True,
        capture_output=True,
        timeout=600,
    )


@pytest.mark.slow
def test_the_script_ships_a_loadable_sd3_pipeline_and_a_rerun_resumes_to_the_same_files(tmp_path):
    train(tmp_path)
    pipe = StableDiffusion3Pipeline.from_pretrained(tmp_path / "out", text_encoder_3=None, tokenizer_3=None)
    image = pipe("a small red circle on a striped blue background", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (64, 64, 3)
    log = json.loads((tmp_path / "log.json").read_text())
    assert len(log["curves"]["dit"]) == 1 and log["zero_token_check_max_abs_error"] < 1e-4
    assert (tmp_path / "loss.png").stat().st_size > 0
    weights = tmp_path / "out" / "transformer" / "diffusion_pytorch_model.safetensors"
    shipped = load_file(weights)
    train(tmp_path)  # the checkpoint is complete, so nothing trains again
    again = load_file(weights)
    assert all((shipped[k] == again[k]).all() for k in shipped)
