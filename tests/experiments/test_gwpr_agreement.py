"""``experiments/gwpr_agreement.py`` at toy size: real attention maps of the shipped model in, agreement shares out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "gwpr_agreement.py"


def test_the_script_compares_fixed_and_converged_kept_sets_on_real_maps(tmp_path):
    out = tmp_path / "agreement.json"
    args = ["--captions", "1", "--steps", "3", "--every", "2", "--out", str(out)]
    subprocess.run([sys.executable, str(SCRIPT), *args], check=True, capture_output=True, timeout=600)
    result = json.loads(out.read_text())
    assert result["tokens"] == 1024  # the shipped model's highest-resolution level
    assert set(result["agreement"]) == {"1", "2", "3", "5", "10", "20"}
    for row in result["agreement"].values():
        assert set(row) == {"0.3", "0.5", "0.7"}
        for cell in row.values():
            assert cell["maps"] == 2 * 2 * 3  # 2 captured iterations x 2 CFG halves x 3 highest-resolution slots
            assert 0 <= cell["identical"] <= cell["overlap"] <= 1
