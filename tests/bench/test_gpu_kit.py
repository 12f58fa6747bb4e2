"""The GPU kit's mechanics on the CPU with tiny sections (the real run needs a GPU: `prunesched bench gpu`, docs/benchmarks.md)."""

import json
from pathlib import Path

import torch
from click.testing import CliRunner

from prunesched.bench.atedm import AtedmBenchConfig
from prunesched.bench.gpu import GPU_ATEDM, GPU_CAT, GPU_STEP, Section, gpu_kit, gpu_search, run_kit, search_section, step_section
from prunesched.bench.step import StepBenchConfig
from prunesched.cli import main
from prunesched.models.tiny import tiny_sd_pipeline
from prunesched.search.config import SearchConfig
from prunesched.storage.store import Store


def _broken(_log: object) -> dict[str, object]:
    raise RuntimeError("CUDA out of memory")


def test_every_section_runs_on_its_own_and_the_json_is_written_after_each(tmp_path):
    synthetic = SearchConfig.from_dict(
        {
            "name": "kit",
            "objectives": ["error", "cost"],
            "space": {"kind": "dato", "steps": 6},
            "proposer": {"backend": "pymoo", "population": 4, "generations": 2},
            "evaluator": {"kind": "synthetic"},
            "dispatch": {"workers": 1},
        }
    )
    small = StepBenchConfig(latent=8, repeats=1, ratios=(0.5,), branches=(0,), methods=("dato",), e2e_latent=0)
    sections = [
        step_section(small, tiny_sd_pipeline().unet),
        Section("broken", _broken),
        search_section(synthetic, tmp_path / "kit.db"),
    ]
    written: list[dict] = []
    result = run_kit(sections, lambda r: written.append(json.loads(json.dumps(r))), log=lambda _m: None)

    assert [list(w["sections"]) for w in written] == [["step"], ["step", "broken"], ["step", "broken", "search"]]
    assert written[-1] == json.loads(json.dumps(result))
    step, broken, search = (result["sections"][name] for name in ("step", "broken", "search"))
    assert step["steps"]["branch0"]["median_s"] > 0 and step["wall_s"] > 0
    assert broken["error"] == "RuntimeError: CUDA out of memory", "a failed section is recorded and the next one still runs"
    assert search["done"] == search["evaluations"] >= 4 and search["devices"] == {"cpu (synthetic)": search["evaluations"]}
    assert len(Store(tmp_path / "kit.db").evaluations(search["search_id"])) == search["evaluations"], "the search is kept"
    gpu_goal = result["goals"]["search.evaluations_on_gpu"]
    assert gpu_goal["value"] == 0 and not gpu_goal["met"], "the synthetic evaluator ran on no GPU"
    assert "step.branch0_share_of_full" in result["goals"] and result["goals"]["kit_wall_s"]["value"] == result["wall_s"]


def test_the_kit_measures_what_the_issue_names():
    assert [section.name for section in gpu_kit(Path("kit.db"))] == ["step", "atedm", "cat", "search"]
    assert (GPU_STEP.latent, GPU_STEP.e2e_latent, GPU_STEP.device) == (64, 64, "cuda"), "512x512 on SD 1.5, Table 6 end to end too"
    assert GPU_ATEDM.latency_latent == GPU_CAT.latency_latent == 128 and GPU_ATEDM.unet == AtedmBenchConfig().unet, "SDXL and SD3 at 1024"
    search, default = gpu_search(), SearchConfig.default()
    assert search.proposer.generations == 2 and search.dispatch.gpus_per_worker * search.dispatch.workers == 1
    assert search.evaluator == default.evaluator and search.baselines == default.baselines and search.validation == default.validation


def test_cli_refuses_without_a_gpu_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(main, ["bench", "gpu", "-o", str(tmp_path / "kit.json")])
    assert result.exit_code == 2 and "no CUDA GPU is visible" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "kit.json").exists()
