"""The negatives ablation and domain-adaptation comparison presets load and set their switch."""

import pytest

from cad2scan.config import load_config


@pytest.mark.parametrize("preset, check", [
    ("ablations/nega_scene", lambda c: c.align.negatives == "scene" and c.align.mode == "pda"),
    ("ablations/nega_models", lambda c: c.align.mode == "models_only" and c.align.negatives == "models"),
    ("ablations/adda", lambda c: c.model.adaptation == "adda" and not c.model.use_hull),
    ("ablations/pointdan", lambda c: c.model.adaptation == "pointdan" and not c.model.use_hull),
])
def test_preset_loads_and_differs_from_scannet_only_by_its_switch(preset, check):
    cfg = load_config(preset)
    base = load_config("scannet")
    assert check(cfg)
    assert cfg.data == base.data and cfg.train == base.train
    assert cfg.align.augment == base.align.augment and cfg.model.backbone == base.model.backbone
