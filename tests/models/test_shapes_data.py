"""The shapes data, tokenizer and architecture: deterministic, split by caption, one token per word, 1024 tokens at the top."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prunesched.errors import ConfigError
from prunesched.evaluation.prompts import prompt_set
from prunesched.models.shapes import architecture
from prunesched.models.shapes.data import COLOURS, RELATIONS, SHAPES, main_object, sample, scene, vocabulary
from prunesched.models.shapes.judge import load_judge


def test_every_image_is_a_pure_function_of_its_index_and_split():
    first, again, other = sample(3)[0], sample(3)[0], sample(4)[0]
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))
    assert np.asarray(first).shape == (64, 64, 3)


def test_held_out_captions_never_occur_in_training_and_cover_every_shape_and_colour():
    train = {scene(i, "train")[0].caption for i in range(2000)}
    heldout = [scene(i, "heldout")[0] for i in range(300)]
    assert not train & {s.caption for s in heldout}
    assert {s.shape for s in heldout} == set(SHAPES) and {s.colour for s in heldout} == set(COLOURS)
    assert len(COLOURS) >= 6 and len(SHAPES) >= 3


def test_scenes_use_three_different_colours_and_the_caption_names_the_main_object_first():
    for i in range(200):
        described = scene(i)[0]
        colours = {described.colour, described.background} | ({described.second[1]} if described.second else set())
        assert len(colours) == (3 if described.second else 2)
        assert main_object(described.caption) == (described.shape, described.colour)
    assert main_object("a photo of a cat") is None


def painted(image, name: str) -> np.ndarray:
    """The (H, W) mask of pixels drawn in exactly the named colour (antialiased edges and textures excluded)."""
    return np.abs(np.asarray(image).astype(int) - np.array(COLOURS[name])).sum(axis=2) < 30


def test_the_main_object_is_drawn_in_its_colour_and_larger_than_the_second():
    for i in range(40):
        image, described = sample(i)
        near = lambda name, image=image: painted(image, name).sum()  # noqa: E731
        if described.second is not None:
            assert near(described.colour) > near(described.second[1])
        assert near(described.colour) > 0.035 * image.width * image.height  # a small triangle covers about 5 %


def test_the_main_object_lies_where_the_relation_says_from_the_second():
    checked = 0
    for i in range(60):
        image, described = sample(i)
        if described.second is None:
            continue
        centre = lambda name, image=image: np.argwhere(painted(image, name)).mean(axis=0)[::-1]  # noqa: E731
        offset = centre(described.colour) - centre(described.second[1])  # (x, y) from the second object to the main one
        dx, dy = RELATIONS[described.second[2]]
        assert offset @ np.array([dx, dy]) > 8, described.caption  # pixels along the named direction
        checked += 1
    assert checked >= 10


def test_the_tokenizer_reads_every_caption_word_as_one_token(tmp_path):
    tokenizer = architecture.tokenizer(tmp_path)
    for word in vocabulary():
        assert len(tokenizer(word).input_ids) == 3, word  # start, the word, end
    longest = max((scene(i)[0].caption for i in range(500)), key=lambda c: len(c.split()))
    assert len(tokenizer(longest).input_ids) <= architecture.MAX_TOKENS


def test_the_highest_transformer_level_sees_1024_tokens():
    torch.manual_seed(0)
    unet = architecture.unet().eval()
    seen = []
    unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[1]))
    with torch.no_grad():
        unet(torch.randn(1, 4, 32, 32), 10, torch.randn(1, architecture.MAX_TOKENS, 64))
    assert seen == [1024]


def test_the_shapes_prompt_set_is_the_held_out_captions():
    prompts = prompt_set({"kind": "shapes", "count": 5, "seed": 1})
    heldout = {scene(i, "heldout")[0].caption for i in range(1000)}
    assert len(prompts.prompts) == 5 and set(prompts.prompts) <= heldout
    with pytest.raises(ConfigError, match="unknown key 'path' in prompts of kind 'shapes'"):
        prompt_set({"kind": "shapes", "path": "x.txt"})


def test_a_missing_judge_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"judge weights .*missing.safetensors' not found; .*train_shapes.py"):
        load_judge(tmp_path / "missing.safetensors")
