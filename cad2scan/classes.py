"""Category sets: which CAD classes are targets, how scene labels map onto them.

A category set is data (YAML under ``configs/categories/``), not code. Class indices
used everywhere in training and evaluation are::

    0 .. C-2  target classes, in the order of the YAML file
    C-1       background (negatives during training; every non-target scene label)
    -1        ignored (scene points in training, unannotated points in evaluation)

A set for referring transfer learning (``scannet11``, ``s3dis4``) names a few targets and
every other labelled scene point is background (``unlisted_labels: background``). A set for
semantic segmentation of the whole label set (``scannet20``, ``s3dis13``: the benchmarks'
classes) says ``unlisted_labels: ignore``: labels it does not list are ignored, as the
benchmarks do, so no scene point is ever background and mIoU is over exactly the listed
classes (the network keeps its background output; it is simply never the right answer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from cad2scan.errors import ConfigError, UnknownClassError

PRESET_DIR = Path(__file__).resolve().parent / "configs"
IGNORE_INDEX = -1

NYU40_NAMES = (
    "unannotated", "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow",
    "mirror", "floor mat", "clothes", "ceiling", "books", "refrigerator", "television", "paper",
    "towel", "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)
S3DIS_NAMES = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
    "bookcase", "board", "clutter",
)
LABEL_SPACES = {"nyu40": NYU40_NAMES, "s3dis": S3DIS_NAMES}


@dataclass(frozen=True)
class TargetClass:
    """One target category: its display name, CAD folders and scene label ids."""

    name: str
    cad: tuple[str, ...]
    scene: tuple[int, ...]


@dataclass(frozen=True)
class CategorySet:
    """Target classes + background, and the maps from CAD names and scene labels."""

    name: str
    classes: tuple[TargetClass, ...]
    scene_label_space: str
    ignore_scene_labels: tuple[int, ...] = ()
    negatives: tuple[str, ...] | None = None  # None = every non-target CAD class ("auto")
    background: str = "background"
    unlisted_labels: str = "background"  # background | ignore: the class of scene labels no target lists

    @property
    def target_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def names(self) -> list[str]:
        """All C class names: targets then background."""
        return self.target_names + [self.background]

    @property
    def num_classes(self) -> int:
        return len(self.classes) + 1

    @property
    def background_index(self) -> int:
        return len(self.classes)

    def index_of(self, name: str) -> int:
        """Class index of a target or background name."""
        try:
            return self.names.index(name)
        except ValueError:
            raise UnknownClassError(
                f"class {name!r} is not in category set {self.name!r} (known: {', '.join(self.names)})"
            ) from None

    def cad_class_index(self, cad_name: str) -> int | None:
        """Index of the target that a CAD folder name provides, or None for a non-target."""
        for index, target in enumerate(self.classes):
            if cad_name in target.cad:
                return index
        return None

    def negative_cad_classes(self, available: list[str]) -> list[str]:
        """CAD classes used as negatives, from the classes ``available`` in the library."""
        targets = {name for c in self.classes for name in c.cad}
        if self.negatives is None:
            return sorted(name for name in available if name not in targets)
        missing = [name for name in self.negatives if name not in available]
        if missing:
            raise UnknownClassError(
                f"negative classes {missing} of category set {self.name!r} are not in the CAD library "
                f"(available: {', '.join(sorted(available))})"
            )
        return list(self.negatives)

    def scene_label_lut(self) -> np.ndarray:
        """(L,) int64 lookup from a scene label id to a class index (-1 for ignored ids).

        Ids no target lists map to background, or to -1 with ``unlisted_labels == "ignore"``.
        """
        size = len(LABEL_SPACES[self.scene_label_space])
        size = max([size] + [i + 1 for c in self.classes for i in c.scene] + [i + 1 for i in self.ignore_scene_labels])
        unlisted = IGNORE_INDEX if self.unlisted_labels == "ignore" else self.background_index
        lut = np.full(size, unlisted, dtype=np.int64)
        for index, target in enumerate(self.classes):
            lut[list(target.scene)] = index
        lut[list(self.ignore_scene_labels)] = IGNORE_INDEX
        return lut

    def map_scene_labels(self, scene_labels: np.ndarray) -> np.ndarray:
        """(N,) scene label ids -> (N,) int64 class indices (background / -1 ignored).

        Ids outside the label space (e.g. -1 for unlabelled points) are ignored.
        """
        scene_labels = np.asarray(scene_labels, dtype=np.int64)
        lut = self.scene_label_lut()
        out = np.full(scene_labels.shape, IGNORE_INDEX, dtype=np.int64)
        valid = (scene_labels >= 0) & (scene_labels < len(lut))
        out[valid] = lut[scene_labels[valid]]
        return out


def _resolve_scene_label(value, space: str, source: str) -> int:
    """A scene label given as an id or a class name -> its id in ``space``."""
    names = LABEL_SPACES[space]
    if isinstance(value, bool):
        raise ConfigError(f"{source}: scene label {value!r} is not an id or a name")
    if isinstance(value, int):
        if not 0 <= value < len(names):
            raise UnknownClassError(
                f"{source}: scene label id {value} is outside the {space} label space (0..{len(names) - 1})"
            )
        return value
    if isinstance(value, str):
        if value in names:
            return names.index(value)
        raise UnknownClassError(f"{source}: scene label {value!r} is not a {space} class ({', '.join(names)})")
    raise ConfigError(f"{source}: scene label {value!r} is not an id or a name")


def _name_list(value, what: str) -> tuple[str, ...]:
    """A YAML list of non-empty strings (a bare string is an error, not a list of letters)."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{what} must be a list of names, got {value!r}")
    for item in value:
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{what} must be a list of non-empty names, got {item!r} in {list(value)!r}")
    return tuple(value)


def _label_list(value, space: str, what: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{what} must be a list of {space} label ids or names, got {value!r}")
    return tuple(_resolve_scene_label(v, space, what) for v in value)


def category_set_from_dict(raw: dict, source: str = "<dict>") -> CategorySet:
    """Build and validate a CategorySet from its YAML mapping.

    Raises ConfigError for a malformed set (unknown keys, empty or duplicated classes, a
    scene label or CAD class claimed twice) and UnknownClassError for a scene label name
    or id that is not in the label space.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a category set is a mapping, got {type(raw).__name__}")
    known = {"name", "scene_label_space", "ignore_scene_labels", "negatives", "classes", "background",
             "unlisted_labels"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown} (known: {sorted(known)})")
    space = raw.get("scene_label_space", "nyu40")
    if space not in LABEL_SPACES:
        raise ConfigError(f"{source}: scene_label_space {space!r} is not one of {sorted(LABEL_SPACES)}")
    entries = raw.get("classes")
    if entries is None or (isinstance(entries, (list, tuple)) and not entries):
        raise ConfigError(f"{source}: 'classes' is empty")
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(f"{source}: 'classes' must be a list of {{name, cad, scene}} mappings, got {entries!r}")
    classes = []
    for position, entry in enumerate(entries):
        where = f"{source}: classes[{position}]"
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"{where} needs a 'name'")
        extra = sorted(set(entry) - {"name", "cad", "scene"})
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {extra} (known: cad, name, scene)")
        name = entry["name"]
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: 'name' must be a non-empty string, got {name!r}")
        where = f"{where} ({name})"
        cad = _name_list(entry["cad"], f"{where}: 'cad'") if entry.get("cad") is not None else (name,)
        if not cad:
            raise ConfigError(f"{where}: 'cad' lists no CAD classes")
        scene = _label_list(entry.get("scene") or [], space, f"{where}: 'scene'")
        if not scene:
            raise ConfigError(f"{where}: 'scene' lists no label ids")
        classes.append(TargetClass(name, cad, scene))
    names = [c.name for c in classes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: duplicate class names {duplicates} in {names}")
    background = raw.get("background", "background")
    if not isinstance(background, str) or not background:
        raise ConfigError(f"{source}: 'background' must be a non-empty string, got {background!r}")
    if background in names:
        raise ConfigError(f"{source}: background name {background!r} is also a target class name")
    _check_claimed_once(classes, "cad", "CAD class", source)
    _check_claimed_once(classes, "scene", "scene label", source)
    negatives = raw.get("negatives", "auto")
    if negatives in (None, "auto"):
        negatives = None
    else:
        negatives = _name_list(negatives, f"{source}: 'negatives' (a list or 'auto')")
        targets = {cad for c in classes for cad in c.cad}
        clash = sorted(targets.intersection(negatives))
        if clash:
            raise ConfigError(f"{source}: negatives {clash} are target CAD classes")
    ignore = _label_list(raw.get("ignore_scene_labels") or [], space, f"{source}: ignore_scene_labels")
    clash = sorted({i for c in classes for i in c.scene}.intersection(ignore))
    if clash:
        raise ConfigError(f"{source}: scene label(s) {clash} are both ignored and a target class")
    unlisted = raw.get("unlisted_labels", "background")
    if unlisted not in ("background", "ignore"):
        raise ConfigError(f"{source}: unlisted_labels must be 'background' or 'ignore', got {unlisted!r}")
    set_name = raw.get("name", Path(source).stem)
    return CategorySet(
        name=str(set_name),
        classes=tuple(classes),
        scene_label_space=space,
        ignore_scene_labels=ignore,
        negatives=negatives,
        background=background,
        unlisted_labels=unlisted,
    )


def _check_claimed_once(classes: list[TargetClass], field: str, what: str, source: str) -> None:
    """A CAD class or scene label that two targets claim would be silently given to one."""
    owner: dict = {}
    for target in classes:
        for item in getattr(target, field):
            if item in owner and owner[item] != target.name:
                raise ConfigError(f"{source}: {what} {item!r} is claimed by both {owner[item]!r} and {target.name!r}")
            owner[item] = target.name


def _read_yaml(path: Path):
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None


def load_category_set(name_or_path: str | Path) -> CategorySet:
    """Load a category set by preset name (``scannet11``, ``s3dis4``) or YAML path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / "categories" / f"{name_or_path}.yaml"
    if not path.is_file():
        presets = sorted(p.stem for p in (PRESET_DIR / "categories").glob("*.yaml"))
        raise ConfigError(f"category set {str(name_or_path)!r} not found (presets: {', '.join(presets)})")
    return category_set_from_dict(_read_yaml(path), str(path))


@dataclass(frozen=True)
class SizePriors:
    """Real-world box sizes (l, w, h) in metres per CAD class, with a default."""

    sizes: dict
    default: tuple[float, float, float]

    def size_of(self, cad_class: str) -> tuple[float, float, float]:
        return tuple(self.sizes.get(cad_class, self.default))


def load_size_priors(name_or_path: str | Path = "size_priors") -> SizePriors:
    """Load size priors from ``configs/size_priors.yaml`` or a user YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"size priors file {str(path)!r} not found")
    raw = _read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: size priors are a mapping (classes, default), got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"default", "classes"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown} (known: classes, default)")

    def check(key, value):
        if not (isinstance(value, (list, tuple)) and len(value) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                        for v in value)):
            raise ConfigError(f"{path}: {key} must be three positive numbers (l, w, h in metres), got {value!r}")
        return tuple(float(v) for v in value)

    classes = raw.get("classes") or {}
    if not isinstance(classes, dict):
        raise ConfigError(f"{path}: classes must map CAD class names to [l, w, h], got {classes!r}")
    sizes = {str(name): check(f"classes.{name}", value) for name, value in classes.items()}
    return SizePriors(sizes=sizes, default=check("default", raw.get("default", [0.6, 0.6, 0.8])))
