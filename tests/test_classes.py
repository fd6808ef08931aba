import numpy as np
import pytest

from cad2scan.classes import (
    IGNORE_INDEX,
    NYU40_NAMES,
    S3DIS_NAMES,
    category_set_from_dict,
    load_category_set,
    load_size_priors,
)
from cad2scan.errors import ConfigError, UnknownClassError

SCANNET11_NYU40 = {
    "bed": 4, "chair": 5, "sofa": 6, "table": 7, "door": 8, "bookshelf": 10, "desk": 14,
    "curtain": 16, "toilet": 33, "sink": 34, "bathtub": 36,
}


def _one_class(**extra):
    raw = {"name": "tiny", "classes": [{"name": "chair", "scene": [5]}]}
    raw.update(extra)
    return raw


# ------------------------------------------------------------------ presets


def test_scannet11_preset_has_the_eleven_nyu40_ids():
    categories = load_category_set("scannet11")
    assert categories.name == "scannet11"
    assert categories.scene_label_space == "nyu40"
    assert categories.num_classes == 12
    assert {c.name: c.scene for c in categories.classes} == {k: (v,) for k, v in SCANNET11_NYU40.items()}
    assert all(c.cad == (c.name,) for c in categories.classes)
    assert categories.names[-1] == "background"
    assert categories.background_index == 11
    assert categories.ignore_scene_labels == (0,)
    assert categories.negatives is None  # "auto"


def test_s3dis4_preset_maps_bookcase_to_cad_bookshelf_and_resolves_scene_names():
    categories = load_category_set("s3dis4")
    assert categories.scene_label_space == "s3dis"
    assert categories.target_names == ["bookcase", "chair", "sofa", "table"]
    by_name = {c.name: c for c in categories.classes}
    assert by_name["bookcase"].cad == ("bookshelf",)
    assert by_name["bookcase"].scene == (S3DIS_NAMES.index("bookcase"),) == (10,)
    assert by_name["chair"].scene == (8,)
    assert by_name["sofa"].scene == (9,)
    assert by_name["table"].scene == (7,)
    assert categories.cad_class_index("bookshelf") == 0
    assert categories.cad_class_index("bookcase") is None  # not a ModelNet40 folder
    assert categories.cad_class_index("lamp") is None


def test_load_category_set_accepts_a_yaml_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("scene_label_space: nyu40\nclasses:\n  - {name: seat, cad: [chair, stool], scene: [chair]}\n")
    categories = load_category_set(path)
    assert categories.name == "mine"  # defaults to the file stem
    assert categories.classes[0].cad == ("chair", "stool")
    assert categories.classes[0].scene == (5,)
    assert categories.cad_class_index("stool") == 0


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="scannet11"):
        load_category_set("scannet12")


def test_invalid_yaml_category_file_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("classes: [ {name: chair\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_category_set(path)


# ------------------------------------------------------------------ scene labels


def test_map_scene_labels_scannet11_known_answers():
    categories = load_category_set("scannet11")
    index = categories.index_of
    labels = np.array([0, 1, 2, 5, 36, 33, 14, 39, 40, 41, 255, -1])
    expected = [IGNORE_INDEX, 11, 11, index("chair"), index("bathtub"), index("toilet"), index("desk"),
                11, 11, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    out = categories.map_scene_labels(labels)
    assert out.dtype == np.int64
    assert out.tolist() == expected


def test_map_scene_labels_gives_every_nyu40_id_its_class():
    categories = load_category_set("scannet11")
    out = categories.map_scene_labels(np.arange(len(NYU40_NAMES)))
    for name, nyu in SCANNET11_NYU40.items():
        assert out[nyu] == categories.index_of(name)
    others = [i for i in range(1, len(NYU40_NAMES)) if i not in SCANNET11_NYU40.values()]
    assert (out[others] == categories.background_index).all()
    assert out[0] == IGNORE_INDEX


def test_map_scene_labels_s3dis4_wall_and_clutter_are_background():
    categories = load_category_set("s3dis4")
    labels = np.array([S3DIS_NAMES.index(n) for n in ("wall", "clutter", "bookcase", "chair", "sofa", "table")]
                      + [13, -1])
    assert categories.map_scene_labels(labels).tolist() == [4, 4, 0, 1, 2, 3, -1, -1]


def test_map_scene_labels_keeps_the_input_shape():
    categories = load_category_set("scannet11")
    out = categories.map_scene_labels(np.array([[5, 0], [1, 7]], dtype=np.uint8))
    assert out.shape == (2, 2)
    assert out.tolist() == [[3, -1], [11, 9]]


SCANNET20_NYU40 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)


def test_scannet20_gives_the_benchmark_ids_their_classes_and_ignores_every_other_label():
    categories = load_category_set("scannet20")
    assert categories.num_classes == 21 and categories.unlisted_labels == "ignore"
    assert [c.scene for c in categories.classes] == [(i,) for i in SCANNET20_NYU40]
    names = categories.target_names
    assert names[:3] == ["wall", "floor", "cabinet"] and names[-1] == "otherfurniture"
    out = categories.map_scene_labels(np.arange(-1, len(NYU40_NAMES) + 2))
    expected = [IGNORE_INDEX] * (len(NYU40_NAMES) + 3)
    for index, nyu in enumerate(SCANNET20_NYU40):
        expected[nyu + 1] = index
    assert out.tolist() == expected  # 0, 13, 15, 17-23, ..., 40, -1 and out-of-range ids are all ignored
    assert categories.background_index not in out


def test_s3dis13_maps_each_s3dis_class_to_itself_and_unannotated_points_are_ignored():
    categories = load_category_set("s3dis13")
    assert categories.target_names == list(S3DIS_NAMES)
    assert categories.map_scene_labels(np.arange(-1, 14)).tolist() == [-1, *range(13), -1]
    assert categories.cad_class_index("bookshelf") == categories.index_of("bookcase")


def test_unlisted_labels_must_be_background_or_ignore():
    assert category_set_from_dict(_one_class()).unlisted_labels == "background"
    with pytest.raises(ConfigError, match="unlisted_labels"):
        category_set_from_dict(_one_class(unlisted_labels="drop"))


def test_index_of_unknown_name_raises_unknown_class_error():
    with pytest.raises(UnknownClassError, match="lamp"):
        load_category_set("scannet11").index_of("lamp")


# ------------------------------------------------------------------ negatives


def test_auto_negatives_are_every_non_target_cad_class():
    categories = load_category_set("s3dis4")
    available = ["chair", "lamp", "bookshelf", "table", "sofa", "vase", "bed"]
    assert categories.negative_cad_classes(available) == ["bed", "lamp", "vase"]


def test_explicit_negatives_are_used_as_given():
    categories = category_set_from_dict(_one_class(negatives=["vase", "lamp"]))
    assert categories.negatives == ("vase", "lamp")
    assert categories.negative_cad_classes(["chair", "lamp", "vase", "bed"]) == ["vase", "lamp"]


def test_missing_explicit_negative_raises_unknown_class_error_naming_it():
    categories = category_set_from_dict(_one_class(negatives=["vase", "piano"]))
    with pytest.raises(UnknownClassError, match="piano") as info:
        categories.negative_cad_classes(["chair", "vase"])
    assert "vase" not in str(info.value).split("available")[0]


def test_negatives_that_are_targets_are_rejected():
    with pytest.raises(ConfigError, match="chair"):
        category_set_from_dict(_one_class(negatives=["chair", "lamp"]))


def test_negatives_as_a_bare_string_is_rejected_not_split_into_letters():
    with pytest.raises(ConfigError, match="negatives"):
        category_set_from_dict(_one_class(negatives="lamp"))


# ------------------------------------------------------------------ invalid sets


@pytest.mark.parametrize("raw, match", [
    (_one_class(colour="red"), "colour"),
    ({"classes": [{"name": "chair", "scene": [5], "size": 3}]}, "size"),
    ({"classes": []}, "empty"),
    ({"name": "x"}, "empty"),
    ({"classes": [{"name": "chair", "scene": [5]}, {"name": "chair", "scene": [6]}]}, "duplicate"),
    ({"classes": [{"scene": [5]}]}, "name"),
    ({"classes": [{"name": "chair"}]}, "scene"),
    ({"classes": [{"name": "chair", "scene": 5}]}, "scene"),
    ({"classes": [{"name": "chair", "cad": "chair", "scene": [5]}]}, "cad"),
    ({"classes": [{"name": "a", "scene": [5]}, {"name": "b", "scene": [5]}]}, "5"),
    ({"classes": [{"name": "a", "cad": ["chair"], "scene": [5]}, {"name": "b", "cad": ["chair"], "scene": [6]}]},
     "chair"),
    ({"background": "chair", "classes": [{"name": "chair", "scene": [5]}]}, "background"),
    ({"ignore_scene_labels": [5], "classes": [{"name": "chair", "scene": [5]}]}, "ignored"),
    ({"scene_label_space": "coco", "classes": [{"name": "chair", "scene": [5]}]}, "coco"),
    ({"classes": [{"name": "chair", "scene": [True]}]}, "True"),
    ("chair", "mapping"),
])
def test_malformed_category_set_raises_config_error(raw, match):
    with pytest.raises(ConfigError, match=match):
        category_set_from_dict(raw, "cats.yaml")


@pytest.mark.parametrize("scene, match", [(["armchair"], "armchair"), ([41], "41"), ([-2], "-2")])
def test_bad_scene_label_raises_unknown_class_error(scene, match):
    with pytest.raises(UnknownClassError, match=match):
        category_set_from_dict({"classes": [{"name": "chair", "scene": scene}]}, "cats.yaml")


def test_error_messages_name_the_source_and_the_class():
    with pytest.raises(UnknownClassError) as info:
        category_set_from_dict({"classes": [{"name": "seat", "scene": ["armchair"]}]}, "my_cats.yaml")
    assert "my_cats.yaml" in str(info.value) and "seat" in str(info.value)


# ------------------------------------------------------------------ size priors


def test_default_size_priors_hold_the_documented_values():
    priors = load_size_priors()
    assert priors.size_of("chair") == (0.59, 0.55, 0.83)
    assert priors.size_of("bed") == (2.11, 1.62, 0.93)
    assert priors.size_of("bookshelf") == (0.40, 1.07, 1.69)
    assert priors.size_of("door")[2] == 2.0
    assert priors.size_of("unheard_of") == priors.default == (0.6, 0.6, 0.8)
    for name in SCANNET11_NYU40:
        assert name in priors.sizes


def test_user_size_priors_file(tmp_path):
    path = tmp_path / "priors.yaml"
    path.write_text("default: [1, 1, 1]\nclasses:\n  chair: [0.5, 0.5, 1]\n")
    priors = load_size_priors(path)
    assert priors.size_of("chair") == (0.5, 0.5, 1.0)
    assert priors.size_of("sofa") == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("text, match", [
    ("classes:\n  chair: [0.5, 0.5]\n", "classes.chair"),
    ("classes:\n  chair: [0.5, -0.5, 1]\n", "classes.chair"),
    ("classes:\n  chair: [0.5, 0.5, .inf]\n", "classes.chair"),
    ("classes:\n  chair: [true, 0.5, 1]\n", "classes.chair"),
    ("classes:\n  chair: tall\n", "classes.chair"),
    ("default: [0, 1, 1]\n", "default"),
    ("sizes: {}\n", "sizes"),
    ("classes: [chair]\n", "classes"),
    ("- 1\n- 2\n", "mapping"),
    ("classes: {chair: [1, 1\n", "YAML"),
])
def test_bad_size_priors_raise_config_error_naming_the_key(tmp_path, text, match):
    path = tmp_path / "priors.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_size_priors(path)
    assert "priors.yaml" in str(info.value)


def test_missing_size_priors_file_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_size_priors(tmp_path / "nope.yaml")
