"""``cad2scan zeroshot``: segment categories never seen in training, from their names alone.

The open-vocabulary baseline: class anchors are projected from text embeddings of the class
names (``model.anchor_source: text``, preset ``configs/openvocab.yaml``). A run

1. prepares the data set's CAD models, unlabelled and labelled scans (``demo`` generates the
   embedded data into ``DIR/data`` when missing);
2. trains on the *seen* target classes only: the CAD models of the *unseen* classes are
   removed from the bank entirely, so they are neither targets nor negatives;
3. swaps in the anchors of *all* target classes — the seen ones as trained, the unseen ones
   from their text embeddings through the learned projection — and evaluates on the
   labelled scans: AP per class, AmAP over the seen and over the unseen classes (zero-shot),
   and a chance reference per class (the AP of a random score: the class's share of the
   evaluated points);
4. writes ``DIR/zeroshot.json`` and ``DIR/zeroshot.md`` (atomically), the training run in
   ``DIR/runs/zeroshot/`` and the all-classes network in
   ``DIR/runs/zeroshot/model_all_classes.safetensors`` (usable by ``predict`` / ``evaluate``).

Default unseen classes per category set: ``configs/categories/<set>_zeroshot.yaml``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from cad2scan.classes import PRESET_DIR, CategorySet, load_category_set
from cad2scan.config import RunConfig, config_from_dict, config_to_dict, load_raw_config, merge_dicts, parse_overrides
from cad2scan.errors import Cad2ScanError, ConfigError, UnknownClassError
from cad2scan.eval.evaluate import nan_mean, positive_rates  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

SWITCH_PRESET = "openvocab"  # its difference from scannet.yaml is applied on top of the data set's preset
RUN_NAME = "zeroshot"


def zeroshot_config(data: str, out_dir: str | Path, *, seed: int = 0, smoke: bool = False,
                    overrides: list[str] | None = None) -> RunConfig:
    """The resolved config of a zero-shot run on ``data`` ("demo" | "scannet" | "s3dis").

    Order (later wins): the data set's preset, the smoke settings, the ``openvocab`` switch
    (``model.anchor_source: text``), the demo data paths (``data == "demo"``), ``train.seed``,
    ``overrides``.
    """
    from cad2scan.demo import SMOKE_OVERRIDES, demo_data_paths
    from cad2scan.experiments import DATASETS, SWITCH_BASE, dict_difference

    if data not in DATASETS:
        raise ConfigError(f"unknown data set {data!r} (known: {', '.join(DATASETS)})")
    raw = load_raw_config(data)
    if smoke:
        raw = merge_dicts(raw, parse_overrides(SMOKE_OVERRIDES))
    switches = dict_difference(load_raw_config(SWITCH_PRESET), load_raw_config(SWITCH_BASE))
    switches.pop("name", None)
    raw = merge_dicts(raw, switches)
    raw["name"] = RUN_NAME
    if data == "demo":
        raw = merge_dicts(raw, {"data": demo_data_paths(out_dir)})
    raw = merge_dicts(raw, parse_overrides([f"train.seed={seed}"] + list(overrides or [])))
    cfg = config_from_dict(raw, f"zeroshot ({data})")
    if cfg.model.anchor_source != "text":
        raise ConfigError("zeroshot needs model.anchor_source=text (unseen classes get anchors from their names)")
    return cfg


def load_zeroshot_split(name_or_path: str | Path) -> tuple[str, tuple[str, ...]]:
    """A split file (``configs/categories/<set>_zeroshot.yaml`` or a path) -> (category set, unseen names)."""
    from cad2scan.config import read_yaml

    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / "categories" / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"zero-shot split {str(name_or_path)!r} not found ({path})")
    raw = read_yaml(path)
    unknown = sorted(set(raw) - {"split_of", "unseen"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown} (known: split_of, unseen)")
    split_of, unseen = raw.get("split_of"), raw.get("unseen")
    if not isinstance(split_of, str) or not split_of:
        raise ConfigError(f"{path}: 'split_of' must name a category set, got {split_of!r}")
    if not isinstance(unseen, list) or not unseen or not all(isinstance(n, str) and n for n in unseen):
        raise ConfigError(f"{path}: 'unseen' must be a non-empty list of class names, got {unseen!r}")
    return split_of, tuple(unseen)


def default_unseen(categories: CategorySet) -> tuple[str, ...]:
    """The unseen classes of ``configs/categories/<set name>_zeroshot.yaml``."""
    path = PRESET_DIR / "categories" / f"{categories.name}_zeroshot.yaml"
    if not path.is_file():
        raise ConfigError(f"category set {categories.name!r} has no default zero-shot split ({path}): "
                          f"name the unseen classes (--unseen a,b)")
    split_of, unseen = load_zeroshot_split(path)
    if split_of != categories.name:
        raise ConfigError(f"{path}: split_of {split_of!r} is not the category set {categories.name!r}")
    return unseen


def resolve_unseen(categories: CategorySet, unseen: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Validate the unseen class names against ``categories`` (order of the set, duplicates dropped).

    Raises UnknownClassError for a name that is not a target class (background included) and
    ConfigError when nothing, or every target, would be unseen.
    """
    names = [name.strip() for name in unseen if name.strip()]
    if not names:
        raise ConfigError("name at least one unseen class (e.g. --unseen bathtub,toilet)")
    targets = categories.target_names
    wrong = [name for name in names if name not in targets]
    if wrong:
        raise UnknownClassError(f"unseen class(es) {wrong} are not target classes of category set "
                                f"{categories.name!r} (targets: {', '.join(targets)})")
    chosen = tuple(name for name in targets if name in set(names))
    if len(chosen) == len(targets):
        raise ConfigError(f"every target class of {categories.name!r} would be unseen: keep at least one seen class")
    return chosen


def seen_categories(categories: CategorySet, unseen: tuple[str, ...]) -> CategorySet:
    """``categories`` without the unseen targets; their CAD classes are not negatives either."""
    unseen_cad = unseen_cad_classes(categories, unseen)
    negatives = None if categories.negatives is None else tuple(n for n in categories.negatives if n not in unseen_cad)
    return dataclasses.replace(categories, name=f"{categories.name}-seen",
                               classes=tuple(c for c in categories.classes if c.name not in unseen),
                               negatives=negatives)


def unseen_cad_classes(categories: CategorySet, unseen: tuple[str, ...]) -> set[str]:
    """The CAD folder names that provide models of the unseen classes."""
    return {cad for c in categories.classes if c.name in unseen for cad in c.cad}


def seen_training_data(data, unseen: tuple[str, ...]):
    """A ``TrainingData`` for the seen classes: the unseen classes' CAD models are removed
    from the bank (so no sample holds them, as targets or as negatives); scans are shared."""
    from cad2scan.prepare import ModelBank
    from cad2scan.train.loop import TrainingData

    excluded = unseen_cad_classes(data.categories, unseen)
    bank = ModelBank({name: items for name, items in data.bank.points.items() if name not in excluded})
    return TrainingData(seen_categories(data.categories, unseen), data.priors, bank, data.train_scenes,
                        data.eval_scenes)


def _json_number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def summarise(ap: dict[str, float], chance: dict[str, float], seen: list[str], unseen: list[str]) -> dict:
    """AmAP over the seen and the unseen classes, for the network and for chance (percent)."""
    return {
        "AmAP_seen": nan_mean([ap[n] for n in seen]), "AmAP_unseen": nan_mean([ap[n] for n in unseen]),
        "AmAP_all": nan_mean([ap[n] for n in seen + unseen]),
        "chance_AmAP_seen": nan_mean([chance[n] for n in seen]),
        "chance_AmAP_unseen": nan_mean([chance[n] for n in unseen]),
    }


def format_markdown(document: dict) -> str:
    """The report: a summary table and per-class AP next to chance."""

    def number(value) -> str:
        return "-" if value is None else f"{value:.2f}"

    unseen = set(document["unseen"])
    lines = [
        f"# Zero-shot segmentation of unseen classes ({document['data']})", "",
        f"Text anchors (all-MiniLM-L6-v2 embeddings of \"{document['template']}\", learned projection). "
        f"Trained on {len(document['seen'])} seen classes; the CAD models of the unseen classes "
        f"({', '.join(document['unseen'])}) were excluded from training. Seed {document['seed']}, "
        f"{document['steps']} steps, train {document['train_s']:.1f} s, total {document['total_s']:.1f} s."
        + (" Smoke run: tiny data and steps, numbers meaningless." if document["smoke"] else ""), "",
        "| | AmAP (%) | chance (%) |", "|---|---:|---:|",
        f"| seen | {number(document['AmAP_seen'])} | {number(document['chance_AmAP_seen'])} |",
        f"| unseen (zero-shot) | {number(document['AmAP_unseen'])} | {number(document['chance_AmAP_unseen'])} |",
        "", "Chance: the AP of a random score, i.e. the class's share of the evaluated points.", "",
        "| class | split | AP (%) | chance (%) |", "|---|---|---:|---:|",
    ]
    for name, value in document["AP"].items():
        split = "unseen" if name in unseen else "seen"
        lines.append(f"| {name} | {split} | {number(value)} | {number(document['chance_AP'][name])} |")
    return "\n".join(lines) + "\n"


def run_zeroshot(data: str = "demo", unseen: list[str] | None = None, out_dir: str | Path = "zeroshot_out",
                 seed: int = 0, smoke: bool = False, overrides: list[str] | None = None,
                 progress: bool = True) -> dict:
    """Train on the seen classes, evaluate seen + unseen (see the module docstring).

    ``unseen``: target class names of the data set's category set (None: the set's default
    split). Returns the content of ``out_dir/zeroshot.json``.
    """
    from cad2scan.eval.evaluate import evaluate_scenes
    from cad2scan.io.atomic import atomic_write_text
    from cad2scan.model.text_anchors import DEFAULT_TEMPLATE
    from cad2scan.train.checkpoint import load_checkpoint, save_checkpoint
    from cad2scan.train.loop import prepare_training_data, setup_runtime, train

    started = time.perf_counter()
    out_dir = Path(out_dir)
    cfg = zeroshot_config(data, out_dir, seed=seed, smoke=smoke, overrides=overrides)
    categories = load_category_set(cfg.data.categories)  # names checked before any data work
    unseen_names = resolve_unseen(categories, default_unseen(categories) if unseen is None else unseen)
    if data == "demo":
        from cad2scan.demo import ensure_demo_dataset

        ensure_demo_dataset(out_dir, seed, smoke, progress)
    prepared_cfg = config_from_dict(merge_dicts(config_to_dict(cfg), {"align": {"mode": "pda"}}))
    full = prepare_training_data(prepared_cfg, progress=progress)
    if not full.eval_scenes:
        raise Cad2ScanError("no evaluation scans: set data.eval_scenes (e.g. --set data.eval_scenes=val)")
    seen_names = [name for name in full.categories.target_names if name not in unseen_names]
    training_data = seen_training_data(full, unseen_names)
    log.info("zero-shot: training on %s; unseen %s (CAD classes %s excluded)", seen_names, list(unseen_names),
             sorted(unseen_cad_classes(full.categories, unseen_names)))

    device = setup_runtime(cfg)
    run_dir = out_dir / "runs" / RUN_NAME
    result = train(cfg, run_dir, data=training_data, progress=progress)

    eval_started = time.perf_counter()
    net = load_checkpoint(result.checkpoint, device).net  # no text model needed for the seen classes
    net.set_classes(full.categories.names)  # seen rows kept as trained, unseen rows embedded from their names
    all_classes = run_dir / "model_all_classes.safetensors"
    save_checkpoint(all_classes, net, cfg, full.categories.names,
                    extra={"steps": result.steps, "zeroshot_unseen": list(unseen_names)})
    evaluation = evaluate_scenes(net, full.eval_scenes, full.categories, cfg.data.voxel_size, device,
                                 progress=progress)
    chance = positive_rates(full.eval_scenes, full.categories)
    eval_s = time.perf_counter() - eval_started

    summary = summarise(evaluation.ap, chance, seen_names, list(unseen_names))
    document = {
        "data": data, "smoke": smoke, "seed": seed, "category_set": full.categories.name,
        "template": DEFAULT_TEMPLATE, "seen": seen_names, "unseen": list(unseen_names),
        "excluded_cad_classes": sorted(unseen_cad_classes(full.categories, unseen_names)),
        **{key: _json_number(value) for key, value in summary.items()},
        "AP": {name: _json_number(evaluation.ap[name]) for name in full.categories.target_names},
        "chance_AP": {name: _json_number(chance[name]) for name in full.categories.target_names},
        "mIoU": _json_number(evaluation.miou), "num_points": int(evaluation.num_points),
        "steps": result.steps, "final_loss": _json_number(result.final_loss),
        "train_s": round(result.seconds, 2), "eval_s": round(eval_s, 2),
        "total_s": round(time.perf_counter() - started, 2),
        "eval_scenes": [p.stem for p in full.eval_scenes], "run_dir": str(run_dir),
        "checkpoint": str(result.checkpoint), "checkpoint_all_classes": str(all_classes),
        "config": config_to_dict(cfg),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "zeroshot.json", json.dumps(document, indent=2) + "\n")
    atomic_write_text(out_dir / "zeroshot.md", format_markdown(document))
    log.info("zero-shot: AmAP seen %.2f (chance %.2f), unseen %.2f (chance %.2f)", summary["AmAP_seen"],
             summary["chance_AmAP_seen"], summary["AmAP_unseen"], summary["chance_AmAP_unseen"])
    return document
