import dataclasses
import tomllib
from pathlib import Path

import pytest
import yaml

from cad2scan.classes import load_category_set, load_size_priors
from cad2scan.config import (
    DATA_FILES,
    PRESET_DIR,
    RunConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    load_raw_config,
    parse_overrides,
    save_config,
)
from cad2scan.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
RUN_PRESETS = sorted(
    str(p.relative_to(PRESET_DIR).with_suffix("")) for p in PRESET_DIR.rglob("*.yaml")
    if p.parent.name != "categories" and p.stem not in DATA_FILES
)


def test_the_expected_presets_exist():
    assert {"demo", "scannet", "s3dis"} <= set(RUN_PRESETS)
    assert (REPO / "configs").resolve() == PRESET_DIR


@pytest.mark.parametrize("preset", RUN_PRESETS)
def test_every_preset_loads_validates_and_names_existing_categories(preset):
    cfg = load_config(preset)
    assert isinstance(cfg, RunConfig)
    assert cfg.validate() is cfg
    assert cfg.name  # every preset names its run
    load_category_set(cfg.data.categories)
    load_size_priors(cfg.data.size_priors)
    # a preset's file keys are all known: re-loading the raw mapping gives the same config
    assert config_from_dict(load_raw_config(preset)) == cfg


@pytest.mark.parametrize("preset", RUN_PRESETS)
def test_every_preset_round_trips_through_yaml(preset, tmp_path):
    cfg = load_config(preset)
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    assert config_from_dict(yaml.safe_load(text)) == cfg
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # atomic: no temp file left


def test_scannet_preset_is_the_paper_setting():
    cfg = load_config("scannet")
    assert cfg.data.voxel_size == 0.05
    assert cfg.data.points_per_model == 8192
    assert cfg.data.categories == "scannet11"
    assert cfg.model.backbone.out_channels == 96
    assert cfg.model.backbone.in_channels == 1
    assert cfg.model.hull.num_prototypes == 128
    assert cfg.model.use_hull is True
    assert cfg.train.batch_size == 4
    assert cfg.train.epochs == 200
    assert cfg.train.lr == 0.001
    assert (cfg.align.augment.scale_low, cfg.align.augment.scale_high) == (0.9, 1.1)


def test_s3dis_inherits_scannet_and_overrides_data():
    scannet, s3dis = load_config("scannet"), load_config("s3dis")
    assert s3dis.name == "s3dis"
    assert s3dis.data.scene_format == "s3dis"
    assert s3dis.data.categories == "s3dis4"
    assert s3dis.data.train_scenes == "1,2,3,4,6"
    assert s3dis.data.eval_scenes == "5"
    # everything s3dis.yaml does not set comes from scannet.yaml
    assert s3dis.model == scannet.model
    assert s3dis.train == scannet.train
    assert s3dis.align == scannet.align
    assert s3dis.data.cad_root == scannet.data.cad_root
    assert s3dis.data.voxel_size == scannet.data.voxel_size
    assert "base" not in load_raw_config("s3dis")


def test_base_chain_resolves_nested_sections_and_relative_paths(tmp_path):
    (tmp_path / "parent.yaml").write_text("name: parent\nbase: scannet\ntrain: {lr: 0.01, epochs: 3}\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "child.yaml").write_text("name: child\nbase: ../parent.yaml\ntrain: {epochs: 5}\n")
    cfg = load_config(sub / "child.yaml")
    assert (cfg.name, cfg.train.lr, cfg.train.epochs, cfg.train.batch_size) == ("child", 0.01, 5, 4)
    assert cfg.model == load_config("scannet").model


def test_base_cycle_raises_config_error(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_missing_base_raises_config_error(tmp_path):
    (tmp_path / "a.yaml").write_text("base: scannet_v3\n")
    with pytest.raises(ConfigError, match="scannet_v3"):
        load_config(tmp_path / "a.yaml")


# ------------------------------------------------------------------ overrides


def test_dotted_overrides_set_typed_values():
    cfg = load_config("scannet", ["train.lr=0.01", "model.hull.num_prototypes=64", "model.use_hull=false",
                                  "data.cad_root=/data/ModelNet40", "train.epochs=7"])
    assert cfg.train.lr == 0.01 and isinstance(cfg.train.lr, float)
    assert cfg.model.hull.num_prototypes == 64
    assert cfg.model.use_hull is False
    assert cfg.data.cad_root == "/data/ModelNet40"
    assert cfg.train.epochs == 7
    assert cfg.model.hull.proj_dim == 16  # siblings untouched


def test_overrides_accept_int_for_float_exponents_and_numbers_for_strings():
    cfg = load_config("s3dis", ["train.lr=1", "train.weight_decay=1e-4", "data.eval_scenes=5",
                                "data.scene_root="])
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.weight_decay == pytest.approx(1e-4)
    assert cfg.data.eval_scenes == "5"
    assert cfg.data.scene_root == ""


def test_parse_overrides_builds_a_nested_mapping():
    assert parse_overrides(["a.b.c=1", "a.b.d=x", "e=[1, 2]"]) == {"a": {"b": {"c": 1, "d": "x"}}, "e": [1, 2]}


@pytest.mark.parametrize("override, match", [
    ("train.lr", "key.sub=value"),
    ("train..lr=1", "empty key"),
    ("name=[1", "not valid YAML"),
])
def test_malformed_overrides_raise_config_error(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config("scannet", [override])


@pytest.mark.parametrize("override, key", [
    ("lr=0.1", "lr"),
    ("train.lrr=0.1", "train.lrr"),
    ("model.hull.foo=1", "model.hull.foo"),
    ("align.mix.overlapp=keep", "align.mix.overlapp"),
    ("data.voxel=0.1", "data.voxel"),
])
def test_unknown_key_raises_config_error_naming_the_dotted_key(override, key):
    with pytest.raises(ConfigError, match="unknown config key") as info:
        load_config("scannet", [override])
    assert key in str(info.value)


def test_unknown_key_in_a_file_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: scannet\nmodel:\n  hull: {num_prototypes: 8, temprature: 0.5}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "mine.yaml" in str(info.value) and "model.hull.temprature" in str(info.value)


@pytest.mark.parametrize("override, key", [
    ("train.epochs=ten", "train.epochs"),
    ("train.epochs=2.5", "train.epochs"),
    ("train.lr=true", "train.lr"),
    ("train.batch_size=false", "train.batch_size"),
    ("model.use_hull=3", "model.use_hull"),
    ("data.cad_root=[a, b]", "data.cad_root"),
    ("data.cad_root=true", "data.cad_root"),
    ("model.hull=8", "model.hull"),
    ("train.lr=fast", "train.lr"),
])
def test_wrong_type_raises_config_error_naming_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        load_config("scannet", [override])
    assert key in str(info.value)


@pytest.mark.parametrize("override, key", [
    ("train.lr=0", "train.lr"),
    ("train.lr=.inf", "train.lr"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.epochs=-1", "train.epochs"),
    ("train.device=gpu", "train.device"),
    ("train.num_workers=-1", "train.num_workers"),
    ("data.voxel_size=0", "data.voxel_size"),
    ("data.voxel_size=.nan", "data.voxel_size"),
    ("data.scene_format=kitti", "data.scene_format"),
    ("align.mode=mixup", "align.mode"),
    ("align.augment.scale_low=1.5", "align.augment.scale_low"),
    ("align.augment.crop_min_anchors=1", "align.augment.crop_min_anchors"),
    ("model.backbone.width_scale=0", "model.backbone.width_scale"),
    ("model.hull.num_prototypes=0", "model.hull"),
    ("model.hull.similarity=l2", "model.hull"),
    ("align.mix.overlap=sometimes", "align.mix"),
])
def test_out_of_range_values_raise_config_error_naming_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        load_config("scannet", [override])
    assert key in str(info.value)


def test_device_accepts_cuda_index():
    assert load_config("scannet", ["train.device=cuda:1"]).train.device == "cuda:1"


# ------------------------------------------------------------------ files and round trips


def test_round_trip_config_dict_yaml_config_with_changed_values():
    cfg = load_config("s3dis", ["train.lr=2.5e-4", "model.hull.similarity=cos", "model.hull.projection=identity",
                                "align.mix.overlap=keep", "train.deterministic=true", "name=trip"])
    raw = config_to_dict(cfg)
    assert raw["model"]["hull"]["similarity"] == "cos"
    text = yaml.safe_dump(raw)
    again = config_from_dict(yaml.safe_load(text))
    assert again == cfg
    assert dataclasses.asdict(again) == dataclasses.asdict(cfg)


def test_config_from_dict_defaults_to_the_dataclass_defaults():
    assert config_from_dict({}) == RunConfig()
    assert config_from_dict(None) == RunConfig()


def test_config_that_is_not_a_mapping_raises():
    with pytest.raises(ConfigError, match="mapping"):
        config_from_dict([1, 2], "x.yaml")


def test_invalid_yaml_file_raises_config_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  lr: [0.1\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(path)


def test_yaml_file_that_is_a_list_raises_config_error_naming_the_file(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- train\n- lr\n")
    with pytest.raises(ConfigError, match="list.yaml"):
        load_config(path)


def test_missing_file_and_unknown_preset_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="scannet"):  # lists the presets
        load_config("scanet")


def test_preset_yaml_files_are_installed_as_package_data():
    """A wheel must ship configs/*.yaml, categories/ and ablations/ (package-data globs)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["cad2scan"]
    package_dir = REPO / "cad2scan"
    files = set(PRESET_DIR.rglob("*.yaml"))
    assert files
    shipped = {p for pattern in globs for p in package_dir.glob(pattern)}
    uncovered = sorted(str(p.relative_to(package_dir)) for p in files - shipped)
    assert not uncovered, f"pyproject package-data {globs} does not ship {uncovered}"
