"""Prompt sets: each source read as its official format says, subsampled deterministically, refused clearly."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from prunesched.errors import ConfigError
from prunesched.evaluation.prompts import coco_captions, imagenet_prompts, parti_prompts, prompt_set, text_prompts
from prunesched.evaluation.settings import PipelineSettings


def test_imagenet_prompts_follow_the_dato_sito_protocol():
    prompts = imagenet_prompts().prompts
    assert len(prompts) == 2000
    counts = Counter(prompts)
    assert len(counts) == 1000 and set(counts.values()) == {2}
    assert prompts[:3] == ("a photo of a tench", "a photo of a tench", "a photo of a goldfish")


def test_coco_gives_one_caption_per_image_in_image_order(tmp_path):
    annotations = [
        {"image_id": 42, "id": 9, "caption": "A dog on a couch. "},
        {"image_id": 7, "id": 5, "caption": "Two cats."},
        {"image_id": 42, "id": 3, "caption": "A brown dog sleeping."},
        {"image_id": 7, "id": 8, "caption": "Cats on a bed."},
    ]
    path = tmp_path / "captions_val2014.json"
    path.write_text(json.dumps({"images": [], "annotations": annotations}))
    assert coco_captions(path).prompts == ("Two cats.", "A brown dog sleeping.")


def test_parti_reads_the_prompt_column(tmp_path):
    path = tmp_path / "PartiPrompts.tsv"
    path.write_text("Prompt\tCategory\tChallenge\tNote\nbond\tAbstract\tBasic\t\na red cube on a blue sphere\tArtifacts\tColors\t\n")
    assert parti_prompts(path).prompts == ("bond", "a red cube on a blue sphere")


def test_text_files_skip_blank_lines(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a cat\n\n  a dog  \n")
    assert text_prompts(path).prompts == ("a cat", "a dog")


def test_subsampling_is_deterministic_by_seed_and_keeps_the_order():
    full = imagenet_prompts()
    first, again, other = full.subsample(50, 3), full.subsample(50, 3), full.subsample(50, 4)
    assert first == again != other
    positions = [full.prompts.index(p) for p in first.prompts]
    assert positions == sorted(positions)
    assert first.hash == again.hash != other.hash != full.hash


def test_a_table_names_a_set_and_subsamples_it(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("\n".join(f"prompt {i}" for i in range(10)))
    table = prompt_set({"kind": "text", "path": str(path), "count": 4, "seed": 1})
    assert len(table.prompts) == 4 and table == prompt_set({"kind": "text", "path": str(path), "count": 4, "seed": 1})
    assert prompt_set(["a", "b"]).prompts == ("a", "b")


def test_the_pipeline_evaluator_draws_its_images_prompts_from_a_set():
    settings = PipelineSettings(prompts={"kind": "imagenet"}, images=8, seed=5)
    assert settings.prompt_list() == list(imagenet_prompts().subsample(8, 5).prompts)
    assert PipelineSettings(prompts=["a", "b"], images=5).prompt_list() == ["a", "b", "a", "b", "a"]


@pytest.mark.parametrize(
    ("spec", "files", "message"),
    [
        ({"kind": "laion"}, {}, "prompts kind 'laion' is not known; valid: imagenet, shapes, coco, parti, text"),
        ({"kind": "text"}, {}, "need a 'path'"),
        ({"kind": "text", "path": "{tmp}/missing.txt"}, {}, "cannot read a text file of prompts at"),
        ({"kind": "text", "path": "{tmp}/bin.txt"}, {"bin.txt": b"\xff\xfe\x00"}, "is not UTF-8 text"),
        ({"kind": "text", "path": "{tmp}/empty.txt"}, {"empty.txt": b"\n\n"}, "holds no prompts"),
        ({"kind": "coco", "path": "{tmp}/c.json"}, {"c.json": b"{not json"}, "is not valid JSON"),
        ({"kind": "coco", "path": "{tmp}/c.json"}, {"c.json": b'{"images": []}'}, "has no 'annotations' list"),
        ({"kind": "coco", "path": "{tmp}/c.json"}, {"c.json": b'{"annotations": [{"id": 1}]}'}, "needs 'image_id' and a 'caption'"),
        ({"kind": "parti", "path": "{tmp}/p.tsv"}, {"p.tsv": b"Text\tCategory\nx\ty\n"}, "has no 'Prompt' column"),
        ({"kind": "imagenet", "count": 0}, {}, "count must be an integer from 1 to 100,000, got 0"),
        ({"kind": "imagenet", "count": 100_001}, {}, "prompts count must be an integer from 1 to 100,000, got 100001"),
        ({"kind": "imagenet", "per_class": 101}, {}, "prompts per_class must be an integer from 1 to 100, got 101"),
        ({"kind": "shapes", "seed": 2**32}, {}, "prompts seed must be an integer from 0 to 4,294,967,295, got 4294967296"),
        ({"kind": "imagenet", "count": 5000}, {}, "asked for 5000 prompts but ImageNet-1k class prompts (2 per class) has 2000"),
        ({"kind": "imagenet", "path": "x"}, {}, "unknown key 'path' in prompts of kind 'imagenet'"),
        (["a", ""], {}, "non-empty list of non-empty strings"),
        ("a cat", {}, "prompts must be a list of strings or a table"),
    ],
)
def test_bad_prompt_sets_are_refused_in_one_line(tmp_path, spec, files, message):
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    if isinstance(spec, dict) and "path" in spec:
        spec = {**spec, "path": spec["path"].format(tmp=tmp_path)}
    with pytest.raises(ConfigError) as error:
        prompt_set(spec)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_search_config_with_an_unreadable_prompt_file_is_refused_before_it_runs(tmp_path):
    from prunesched.search.config import SearchConfig

    with pytest.raises(ConfigError, match="cannot read a text file of prompts"):
        SearchConfig.from_dict(
            {
                "space": {"steps": 5},
                "evaluator": {
                    "kind": "pipeline",
                    "num_inference_steps": 4,
                    "prompts": {"kind": "text", "path": str(tmp_path / "none.txt")},
                },
            }
        )
