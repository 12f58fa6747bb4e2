"""Slots and branch ids on the real SD 1.5 and SDXL UNets, built on the meta device (structure only, no memory)."""

import pytest
import torch
from diffusers import UNet2DConditionModel

from prunesched import Schedule, ScheduleError
from prunesched.models.configs import SD15_UNET, SDXL_UNET
from prunesched.runtime.unet_layout import cache_units, max_branch, select_slots, token_grid


@pytest.fixture(scope="module")
def sd15():
    with torch.device("meta"):
        return UNet2DConditionModel(**SD15_UNET)


@pytest.fixture(scope="module")
def sdxl():
    with torch.device("meta"):
        return UNet2DConditionModel(**SDXL_UNET)


def test_sd15_default_slots_are_the_five_64x64_blocks(sd15):
    slots = select_slots(sd15, Schedule.uniform(1))
    assert [s.name for s in slots] == [
        "down_blocks.0.attentions.0.transformer_blocks.0",
        "down_blocks.0.attentions.1.transformer_blocks.0",
        "up_blocks.3.attentions.0.transformer_blocks.0",
        "up_blocks.3.attentions.1.transformer_blocks.0",
        "up_blocks.3.attentions.2.transformer_blocks.0",
    ]
    assert {token_grid((64, 64), s.level) for s in slots} == {(64, 64)}  # 4096 tokens at 512x512
    assert max_branch(sd15) == 11


def test_sdxl_default_slots_are_at_the_second_level(sdxl):
    slots = select_slots(sdxl, Schedule.uniform(1))
    assert {s.name.split(".attentions")[0] for s in slots} == {"down_blocks.1", "up_blocks.1"}
    assert len(slots) == 2 * 2 + 3 * 2  # two transformer layers per attention block at that level
    assert {token_grid((128, 128), s.level) for s in slots} == {(64, 64)}  # 1024x1024 images
    assert max_branch(sdxl) == 8
    with pytest.raises(ScheduleError, match="valid branch ids: 0 to 8"):
        cache_units(sdxl, {9})


def test_sd15_branch_0_freezes_everything_but_the_shallowest_path(sd15):
    frozen = {u.key for u in cache_units(sd15, {0})}
    assert {"down_blocks.0", "down_blocks.1", "down_blocks.2", "down_blocks.3", "mid_block"} <= frozen
    assert {"up_blocks.0", "up_blocks.1", "up_blocks.2"} <= frozen
    assert {"up_blocks.3.resnets.0", "up_blocks.3.attentions.0", "up_blocks.3.resnets.1", "up_blocks.3.attentions.1"} <= frozen
    assert not frozen & {"up_blocks.3", "up_blocks.3.resnets.2", "up_blocks.3.attentions.2"}
