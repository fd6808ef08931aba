"""Typed run configuration: dataclasses loaded from YAML presets, unknown keys are errors.

A preset is ``configs/<name>.yaml``; a run is reproducible from its resolved config
(saved as ``config.yaml`` in the run folder and inside every checkpoint) and its seed.
Overrides use dotted keys: ``train.lr=0.0005``, ``model.hull.num_prototypes=64``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cad2scan.align.mixing import MixConfig
from cad2scan.align.transforms import ModelAugmentConfig
from cad2scan.errors import ConfigError
from cad2scan.model.backbone import BackboneConfig
from cad2scan.model.hull import HullConfig

PRESET_DIR = Path(__file__).resolve().parent / "configs"
# YAML files under configs/ that hold data, not run presets (besides configs/categories/).
DATA_FILES = ("size_priors", "layout_rules")


@dataclass
class DataConfig:
    """Where the CAD models and scans are, and how they are turned into arrays."""

    cad_root: str = ""  # ModelNet-style folder: <class>/{train,test}/<class>_NNNN.off
    cad_split: str = "train"
    scene_format: str = "scannet"  # scannet | s3dis
    scene_root: str = ""  # ScanNet folder holding scans/ (+ split files) or the S3DIS root
    train_scenes: str = "train"  # scannet: split name/file; s3dis: areas, e.g. "1,2,3,4,6"
    eval_scenes: str = "val"  # scannet: split name/file; s3dis: areas, e.g. "5"
    categories: str = "scannet11"  # preset name or YAML path
    size_priors: str = "size_priors"  # preset name or YAML path
    cache_dir: str = ""  # prepared arrays; default: <scene_root>/../cad2scan_cache
    points_per_model: int = 8192
    voxel_size: float = 0.05
    max_models_per_class: int = 0  # 0 = all models of the split


@dataclass
class AlignConfig:
    """Physical data alignment (PDA) of CAD models into scans."""

    mode: str = "pda"  # pda: mix models into scans | single: size-matched single models (baseline)
    # | models_only: PDA-augmented models placed side by side with no scene (the paper's negaMo)
    negatives: str = "models"  # models: synthetic negative classes | scene: scene points are background (negaSc)
    augment: ModelAugmentConfig = field(default_factory=ModelAugmentConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    negatives_per_sample: int = 1
    scene_crop: float = 0.0  # metres: mix into a random square xy window of the scan; 0 = whole scan


@dataclass
class ModelConfig:
    """Backbone + convex-hull feature alignment + class anchors."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    hull: HullConfig = field(default_factory=HullConfig)
    use_hull: bool = True
    anchor_source: str = "learned"  # learned: free class anchors | text: anchors from class-name embeddings
    adaptation: str = "none"  # none | adda | pointdan: domain-adaptation heads (comparison rows)
    adaptation_weight: float = 0.1  # weight of the adaptation loss beside the anchor loss


@dataclass
class TrainConfig:
    """Optimisation schedule and runtime settings."""

    epochs: int = 200
    steps_per_epoch: int = 0  # 0 = one pass over the unlabelled training scans
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: int = 0  # CPU threads for torch; 0 = all cores (split among a node's processes, minus 1 per data worker)
    num_workers: int = 0  # sample-building worker processes (1 thread each)
    log_every: int = 10
    deterministic: bool = False
    # --- training engine (cad2scan.train.loop): precision, checkpoints, schedule, observability
    amp: str | bool = "off"  # off | bf16 | fp16 (autocast + bf16/fp16 sparse-conv GEMMs; GradScaler for fp16)
    checkpoint_every: int = 0  # steps between resumable checkpoints; 0 = once per epoch
    keep_checkpoints: int = 1  # resumable checkpoints kept in run_dir/checkpoints (newest first)
    eval_every: int = 0  # steps between evaluations on the eval scans; 0 = no evaluation while training
    lr_schedule: str = "constant"  # constant | cosine (to 0 at the last step)
    warmup_steps: int = 0  # linear learning-rate warm-up from lr / warmup_steps
    sync_bn: bool = True  # multi-process runs: BatchNorm statistics over the global batch
    tensorboard: bool = True  # write TensorBoard scalars when the tensorboard package is installed
    # --- what is learned from: RTL (synthetic labels only), labelled scans, or both
    objective: str = "rtl"  # rtl | supervised | rtl+supervised
    label_fraction: float = 1.0  # supervised objectives: fraction of the labelled training scans used
    init_from: str = ""  # checkpoint whose backbone initialises this run (fine-tuning); "" = random init

    def __post_init__(self) -> None:
        if self.amp is False:  # YAML 1.1 reads a bare ``off`` as false
            self.amp = "off"
        self.validate()

    def validate(self) -> None:
        """Check the training-engine fields; raise ConfigError naming the key."""
        checks = [
            (self.amp in ("off", "bf16", "fp16"), "amp", f"must be 'off', 'bf16' or 'fp16', got {self.amp!r}"),
            (self.checkpoint_every >= 0, "checkpoint_every", "must be >= 0 (0 = once per epoch)"),
            (self.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1"),
            (self.eval_every >= 0, "eval_every", "must be >= 0 (0 = no evaluation while training)"),
            (self.lr_schedule in ("constant", "cosine"), "lr_schedule",
             f"must be 'constant' or 'cosine', got {self.lr_schedule!r}"),
            (self.warmup_steps >= 0, "warmup_steps", "must be >= 0"),
        ]
        for ok, key, reason in checks:
            if not ok:
                raise ConfigError(f"config key train.{key}: {reason}")


@dataclass
class RunConfig:
    """Everything a training run needs."""

    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "RunConfig":
        """Check the values the types cannot express; raise ConfigError naming the key."""
        d, a, m, t = self.data, self.align, self.model, self.train
        checks = [
            (a.mode in ("pda", "single", "models_only"), "align.mode", "must be 'pda', 'single' or 'models_only'"),
            (a.negatives in ("models", "scene"), "align.negatives", "must be 'models' or 'scene'"),
            (m.anchor_source in ("learned", "text"), "model.anchor_source", "must be 'learned' or 'text'"),
            (m.adaptation in ("none", "adda", "pointdan"), "model.adaptation", "must be 'none', 'adda' or 'pointdan'"),
            (math.isfinite(m.adaptation_weight) and m.adaptation_weight >= 0, "model.adaptation_weight",
             "must be a finite number >= 0"),
            (m.adaptation == "none" or (t.objective == "rtl" and a.mode == "pda" and a.negatives == "models"),
             "model.adaptation", "needs train.objective=rtl, align.mode=pda and align.negatives=models (the source "
             "domain is the voxels of the synthetic points, the target the real scan's)"),
            (t.objective in ("rtl", "supervised", "rtl+supervised"), "train.objective",
             "must be 'rtl', 'supervised' or 'rtl+supervised'"),
            (0 < t.label_fraction <= 1, "train.label_fraction", "must be in (0, 1]"),
            (d.scene_format in ("scannet", "scannet_npy", "s3dis"), "data.scene_format", "must be 'scannet', 'scannet_npy' or 's3dis'"),
            (math.isfinite(d.voxel_size) and d.voxel_size > 0, "data.voxel_size", "must be a finite number > 0"),
            (d.points_per_model > 0, "data.points_per_model", "must be > 0"),
            (d.max_models_per_class >= 0, "data.max_models_per_class", "must be >= 0 (0 = all)"),
            (bool(d.categories), "data.categories", "must name a category set (e.g. scannet11)"),
            (bool(d.size_priors), "data.size_priors", "must name a size priors file (e.g. size_priors)"),
            (t.batch_size > 0, "train.batch_size", "must be > 0"),
            (t.epochs > 0, "train.epochs", "must be > 0"),
            (t.steps_per_epoch >= 0, "train.steps_per_epoch", "must be >= 0 (0 = one pass over the scans)"),
            (math.isfinite(t.lr) and t.lr > 0, "train.lr", "must be a finite number > 0"),
            (math.isfinite(t.weight_decay) and t.weight_decay >= 0, "train.weight_decay", "must be >= 0"),
            (t.num_threads >= 0, "train.num_threads", "must be >= 0 (0 = all cores)"),
            (t.num_workers >= 0, "train.num_workers", "must be >= 0"),
            (t.log_every > 0, "train.log_every", "must be > 0"),
            (re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", t.device) is not None, "train.device",
             f"must be auto, cpu, cuda, cuda:N or mps, got {t.device!r}"),
            (a.scene_crop >= 0, "align.scene_crop", "must be >= 0 (0 = whole scan)"),
            (a.negatives_per_sample >= 0, "align.negatives_per_sample", "must be >= 0"),
            (a.mix.overlap in ("filter", "keep", "random"), "align.mix.overlap",
             "must be 'filter', 'keep' or 'random'"),
            (0 < a.augment.scale_low <= a.augment.scale_high, "align.augment.scale_low/high",
             "need 0 < scale_low <= scale_high"),
            (2 <= a.augment.crop_min_anchors <= a.augment.crop_max_anchors,
             "align.augment.crop_min_anchors/max", "need 2 <= min <= max"),
            (m.backbone.in_channels > 0, "model.backbone.in_channels", "must be > 0"),
            (m.backbone.out_channels > 0, "model.backbone.out_channels", "must be > 0"),
            (math.isfinite(m.backbone.width_scale) and m.backbone.width_scale > 0, "model.backbone.width_scale",
             "must be a finite number > 0"),
        ]
        for ok, key, reason in checks:
            if not ok:
                raise ConfigError(f"config key {key}: {reason}")
        return self


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (int -> float allowed)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key}: expected a mapping, got {value!r}")
        return _from_dict(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key}: {value!r} does not match {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"config key {key}: expected null, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key}: expected a list, got {value!r}")
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # e.g. ``data.eval_scenes=5`` (an S3DIS area) parses as an int
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"config key {key}: expected {_type_name(tp)}, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"config key {key}: expected {_type_name(tp)}, got {value!r}")
    return value


def _from_dict(cls, raw: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)} (known under "
            f"{prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(names))})"
        )
    kwargs = {name: _coerce(value, hints[name], prefix + name) for name, value in raw.items()}
    try:
        return cls(**kwargs)
    except (ConfigError, TypeError, ValueError) as error:  # a section's own __post_init__ checks
        raise ConfigError(f"config section {prefix.rstrip('.') or 'top level'}: {error}") from None


def config_from_dict(raw: dict, source: str = "<dict>") -> RunConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config file is a mapping, got {type(raw).__name__}")
    try:
        return _from_dict(RunConfig, raw).validate()
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def config_to_dict(cfg: RunConfig) -> dict:
    """Plain nested dict (tuples as lists), YAML/JSON safe."""

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(cfg))


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.2; PyYAML alone wants ``1.0e-3``)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str = "<text>") -> Any:
    """Parse YAML text with the config loader; a syntax error is a ConfigError naming ``source``."""
    try:
        return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML: {error}") from None


def _set_dotted(raw: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    if not all(keys):
        raise ConfigError(f"override {dotted!r}: empty key (expected e.g. train.lr)")
    node = raw
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {key} is not a section")
    node[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> dict:
    """``["train.lr=0.01", "model.use_hull=false"]`` -> nested dict (values parsed as YAML).

    An empty value (``data.cad_root=``) is the empty string.
    """
    raw: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, text = item.split("=", 1)
        value = "" if not text.strip() else parse_yaml(text, f"override {item!r}")
        _set_dotted(raw, key.strip(), value)
    return raw


def merge_dicts(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out


def resolve_preset_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} not found")
        return path
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if not preset.is_file():
        presets = sorted(str(p.relative_to(PRESET_DIR).with_suffix("")) for p in PRESET_DIR.rglob("*.yaml")
                         if p.parent.name != "categories" and p.stem not in DATA_FILES)
        raise ConfigError(f"config preset {str(name_or_path)!r} not found (presets: {', '.join(presets)})")
    return preset


def read_yaml(path: Path) -> dict:
    """A config file's mapping ({} for an empty file); ConfigError naming the file otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file ({error})") from None
    raw = parse_yaml(text, str(path))
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config file is a mapping of sections, got {type(raw).__name__}")
    return raw


def load_raw_config(name_or_path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """A preset's mapping, with ``base: other_preset`` resolved (the file's keys win).

    ``base`` is a preset name or a YAML path; a relative path is taken relative to the
    file that names it.
    """
    path = resolve_preset_path(name_or_path).resolve()
    if path in _chain:
        cycle = " -> ".join(str(p) for p in _chain + (path,))
        raise ConfigError(f"{path}: 'base' inheritance forms a cycle ({cycle})")
    raw = read_yaml(path)
    base = raw.pop("base", None)
    if base is not None:
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{path}: 'base' must name a preset or a YAML file, got {base!r}")
        if Path(base).suffix in (".yaml", ".yml") and not Path(base).is_absolute():
            base = path.parent / base
        raw = merge_dicts(load_raw_config(base, _chain + (path,)), raw)
    return raw


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a preset name (``demo``, ``scannet``, ``ablations/no_crop``) or a YAML path."""
    raw = merge_dicts(load_raw_config(name_or_path), parse_overrides(overrides or []))
    return config_from_dict(raw, str(name_or_path))


def save_config(cfg: RunConfig, path: str | Path) -> None:
    from cad2scan.io.atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
