"""Every ```python block in docs/ runs, page by page, in one namespace per page as a reader runs them in order.

A page's blocks may use what its prose gives the reader (a pipeline, a schedule file): GIVEN makes
those in a fresh folder. Real models on a GPU become the tiny pipeline of the same family
(REAL_MODELS). The few blocks too slow for the test suite are listed in NOT_RUN with the reason
and the test that runs their code; their imports still run, so a renamed module or function fails.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from prunesched import Schedule
from prunesched.models import tiny
from prunesched.runtime.paper_tables import dato_ours_b1
from tests.docs.pages import DOCS, ROOT, code_blocks

REAL_MODELS = {
    'StableDiffusionPipeline.from_pretrained("/models/stable-diffusion-v1-5", torch_dtype=torch.float16).to("cuda")': (
        "_tiny.tiny_sd_pipeline()"
    ),
    'StableDiffusionXLPipeline.from_pretrained("/models/stable-diffusion-xl-base-1.0", torch_dtype=torch.float16).to("cuda")': (
        "_tiny.tiny_sdxl_pipeline()"
    ),
    'StableDiffusion3Pipeline.from_pretrained("/models/stable-diffusion-3-medium-diffusers", torch_dtype=torch.float16).to("cuda")': (
        "_tiny.tiny_sd3_pipeline()"
    ),
    'FluxPipeline.from_pretrained("/models/FLUX.1-dev", torch_dtype=torch.bfloat16).to("cuda")': (
        "_tiny.tiny_flux_pipeline(layers=(10, 1))"  # enough blocks for F8B0
    ),
}
"""A real model's folder on a GPU, which the test machine has neither of, and the tiny pipeline that stands in for it
(``_tiny`` is :mod:`prunesched.models.tiny`, the one name the test adds to a page's namespace)."""

NOT_RUN = {
    ("evaluation.md", 0): "builds a PipelineEvaluator, which generates and scores images (10 s on 2 cores at 2 images of 2 steps); "
    "tests/evaluation/test_fidelity.py registers and uses an extractor",
    ("evaluation.md", 1): "profiles a cost table, timing every plan (minutes on 2 cores); tests/evaluation/test_cost.py",
    ("evaluation.md", 2): "evaluates 64 images of the shapes model against its unaccelerated ones; tests/evaluation/test_evaluate.py",
    ("search.md", 0): "runs a whole search on Ray workers, then resumes it; tests/search/test_search.py runs launch and resume",
    ("calibration.md", 0): "records a calibration of the shapes model (a minute on 2 cores); tests/calibration/test_recording.py "
    "records tiny pipelines' and checks every signal",
    ("cache-dit.md", 0): "runs cache-dit, an optional extra (interop); experiments/cache_dit_agreement.py runs it on tiny pipelines",
}
"""(page, block index): why the block does not run here, and which test runs its code."""

EXTRAS = {"cache_dit"}
"""Modules of optional extras the test environment does not install: a block that is not run does not import them."""

GIVEN = {
    "index.md": 'pipe = _tiny.tiny_sd_pipeline(); Schedule.deepcache(51).save("schedule.json")',
    "runtime.md": 'pipe, prompt, schedule = _tiny.tiny_sd_pipeline(), "a photo of a corgi", Schedule.uniform(51, prune=0.5)',
    "schedule.md": 'cache_ids, ratios = [1, 0, 12], [0.5, 0.3, 0.4]; Schedule.deepcache(51).save("schedule.json"); '
    'Path("table.txt").write_text("1 0 12\\n0.5 0.3 0.4\\n")',
    "tutorials/apply.md": 'dato_ours_b1().save("balanced.json"); Schedule.deepcache(50).save("sdxl.json")',  # PNDM: 51, Euler: 50
}
"""What a page's prose gives the reader before its blocks, by page: names (``pipe`` is "your pipeline") and files."""

TOOLS = {"Path": Path, "Schedule": Schedule, "dato_ours_b1": dato_ours_b1, "_tiny": tiny}
"""What GIVEN is written with; a block itself sees only what its page imports, GIVEN defines, and ``_tiny``."""


def page_name(page: Path) -> str:
    return page.relative_to(ROOT / "docs").as_posix()


def given(name: str) -> dict[str, Any]:
    """The names GIVEN defines for page ``name`` (its files are written in the working folder)."""
    scope = dict(TOOLS)
    exec(GIVEN.get(name, ""), scope)
    return {key: value for key, value in scope.items() if key not in TOOLS and key != "__builtins__"}


def runnable(block: str) -> str:
    for real, stand_in in REAL_MODELS.items():
        block = block.replace(real, stand_in)
    return block


def imports_only(block: str) -> ast.Module:
    imports = [node for node in ast.parse(block).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return ast.Module([node for node in imports if not _imported(node) & EXTRAS], [])


def _imported(node: ast.Import | ast.ImportFrom) -> set[str]:
    """The top-level modules an import statement loads."""
    names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
    return {name.split(".")[0] for name in names}


PYTHON_PAGES = [page for page in DOCS if code_blocks(page, "python")]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=page_name)
def test_every_python_block_of_a_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNESCHED_CACHE", str(tmp_path / "cache"))
    name = page_name(page)
    namespace = {"__name__": "__docs__", "_tiny": tiny, **given(name)}
    for i, block in enumerate(code_blocks(page, "python")):
        where = f"{name}, python block {i}"
        code = imports_only(block) if (page.name, i) in NOT_RUN else ast.parse(runnable(block))
        exec(compile(code, where, "exec"), namespace)


def test_every_exception_still_names_a_block():
    """REAL_MODELS, NOT_RUN and GIVEN name text and blocks the docs still have, so none outlives its reason."""
    blocks = {page_name(page): code_blocks(page, "python") for page in PYTHON_PAGES}
    for real in REAL_MODELS:
        assert any(real in block for page in blocks.values() for block in page), real
    for page, i in NOT_RUN:
        assert i < len(blocks[page]), (page, i)
    assert set(GIVEN) <= set(blocks)
