"""``cad2scan experiment``: the paper's tables as commands.

A *row* is a preset (``configs/<preset>.yaml``, usually ``base: scannet`` plus one switch);
a *table* is a named list of rows. Both are listed in ``experiment_tables.yaml`` beside
this module, with the paper's published numbers we are sure of (``reference``).

An experiment trains every row of a table on one data set, evaluates it on the held-out
labelled scans and writes

    DIR/runs/<row>/                 the training run (config.yaml, model.safetensors, ...)
    DIR/runs/<row>/row.json         seed, wall-clock, steps and metrics of the row
    DIR/results/<table>.md          summary (ours next to the paper's AmAP) + per-class AP
    DIR/results/<table>.json        the same numbers, machine readable

A row's *switches* are its preset's difference from ``scannet.yaml``; they are applied on
top of the data set's preset (``demo``, ``scannet`` or ``s3dis``), so one ablation preset
serves every data set. With ``data="demo"`` the embedded synthetic data is generated into
``DIR/data`` when missing (as ``cad2scan demo`` does); ``smoke=True`` uses the demo's tiny
settings (numbers meaningless, for checks and tests).

A row may start from another row's weights: ``train.init_from: "@pda_fa"`` (the
fine-tuning rows of Tables 3/4) resolves to ``DIR/runs/pda_fa/model.safetensors``, a run of
that row with the same data set, seed, smoke setting and overrides, trained first when it
is not there yet. A row may also carry per-data-set overrides in the registry
(``data_overrides: {s3dis: [data.categories=s3dis13]}``), applied after its switches. A
table with ``metric: iou`` (semantic segmentation) reports per-class IoU instead of AP.

Heavy modules (torch, training) are imported inside the functions that need them, so
listing the registry is instant.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cad2scan.config import (RunConfig, config_from_dict, config_to_dict, load_raw_config, merge_dicts,
                             parse_overrides, read_yaml)
from cad2scan.errors import ConfigError

log = logging.getLogger(__name__)

REGISTRY_PATH = Path(__file__).resolve().parent / "experiment_tables.yaml"
DATASETS = ("demo", "scannet", "s3dis")
SWITCH_BASE = "scannet"  # rows' switches are their difference from this preset
# The evaluation data whose published numbers are shown next to a run on each data set.
# The demo mimics ScanNet's 11 classes; its reference column is ScanNet's, for orientation only.
REFERENCE_DATASET = {"demo": "scannet", "scannet": "scannet", "s3dis": "s3dis"}
CHANCE_ROW = "chance (random scores)"  # per-class AP of a random scorer = the class's share of the points
REFERENCE_NAMES = {"scannet": "ScanNet v2", "s3dis": "S3DIS Area 5"}
ROW_REFERENCE = "@"  # train.init_from: "@<row>" = the model.safetensors of that row's run
METRICS = {"ap": "AmAP", "iou": "mIoU"}


@dataclass(frozen=True)
class Row:
    """One row of a table: a name, the preset that defines it, a human label, and dotted
    overrides applied on particular data sets (``((dataset, (key=value, ...)), ...)``)."""

    name: str
    preset: str
    label: str = ""
    data_overrides: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def overrides_for(self, dataset: str) -> list[str]:
        return [item for name, items in self.data_overrides if name == dataset for item in items]


@dataclass(frozen=True)
class Table:
    """A named list of rows; ``metric`` is the per-class score of its report (ap | iou)."""

    name: str
    title: str
    rows: tuple[Row, ...]
    metric: str = "ap"


@dataclass
class Registry:
    """The rows, tables and paper reference numbers of ``experiment_tables.yaml``.

    Attributes:
        rows: row name -> Row.
        tables: table name -> Table.
        reference: data set (scannet | s3dis) -> row name -> {"AmAP" and/or "mIoU": float, "source": str}.
    """

    rows: dict[str, Row]
    tables: dict[str, Table]
    reference: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def resolve(self, name: str) -> Table:
        """A table by name, a row by name (a one-row table), or any preset (a one-row table)."""
        if name in self.tables:
            return self.tables[name]
        if name in self.rows:
            return Table(name, self.rows[name].label, (self.rows[name],))
        from cad2scan.config import resolve_preset_path

        try:
            resolve_preset_path(name)
        except ConfigError:
            raise ConfigError(f"unknown experiment {name!r}: not a table ({', '.join(self.tables)}), "
                              f"a row ({', '.join(self.rows)}) or a preset") from None
        stem = Path(name).stem
        return Table(stem, f"preset {name}", (Row(stem, str(name), f"preset {name}"),))

    def reference_for(self, dataset: str, row: str) -> dict[str, Any] | None:
        """The paper's numbers for ``row`` on the reference data of ``dataset``, or None."""
        return self.reference.get(REFERENCE_DATASET[dataset], {}).get(row)


def load_registry(path: str | Path = REGISTRY_PATH) -> Registry:
    """Read and check the table registry; ConfigError naming the file on a bad entry."""
    path = Path(path)
    raw = read_yaml(path)
    unknown = sorted(set(raw) - {"rows", "tables", "reference"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown} (known: reference, rows, tables)")
    rows: dict[str, Row] = {}
    for name, entry in (raw.get("rows") or {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("preset"), str):
            raise ConfigError(f"{path}: row {name!r} needs a 'preset' (a preset name)")
        rows[str(name)] = Row(str(name), entry["preset"], str(entry.get("label", "")),
                              _data_overrides(entry.get("data_overrides"), f"{path}: row {name!r}"))
    tables: dict[str, Table] = {}
    for name, entry in (raw.get("tables") or {}).items():
        names = entry.get("rows") if isinstance(entry, dict) else None
        if not isinstance(names, list) or not names:
            raise ConfigError(f"{path}: table {name!r} needs a non-empty list 'rows'")
        missing = [r for r in names if r not in rows]
        if missing:
            raise ConfigError(f"{path}: table {name!r} names unknown row(s) {missing}")
        if str(name) in rows:
            raise ConfigError(f"{path}: {name!r} is both a row and a table")
        metric = entry.get("metric", "ap")
        if metric not in METRICS:
            raise ConfigError(f"{path}: table {name!r}: metric must be one of {sorted(METRICS)}, got {metric!r}")
        tables[str(name)] = Table(str(name), str(entry.get("title", name)), tuple(rows[r] for r in names), metric)
    reference = raw.get("reference") or {}
    for dataset, by_row in reference.items():
        if dataset not in REFERENCE_NAMES:
            raise ConfigError(f"{path}: reference data set {dataset!r} is not one of {sorted(REFERENCE_NAMES)}")
        for row, numbers in (by_row or {}).items():
            values = [numbers.get(k) for k in METRICS.values()] if isinstance(numbers, dict) else []
            if (row not in rows or not any(v is not None for v in values)
                    or not all(v is None or isinstance(v, (int, float)) for v in values)):
                raise ConfigError(f"{path}: reference {dataset}.{row} needs a known row and a number 'AmAP' "
                                  f"and/or 'mIoU'")
    return Registry(rows, tables, {d: dict(r or {}) for d, r in reference.items()})


def _data_overrides(raw, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``{dataset: [key=value, ...]}`` of a registry row, checked."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: data_overrides must map data sets to lists of key=value, got {raw!r}")
    out = []
    for dataset, items in raw.items():
        if dataset not in DATASETS:
            raise ConfigError(f"{where}: data_overrides names unknown data set {dataset!r} (known: {DATASETS})")
        if not isinstance(items, list) or not all(isinstance(i, str) and "=" in i for i in items):
            raise ConfigError(f"{where}: data_overrides.{dataset} must be a list of key=value strings")
        out.append((str(dataset), tuple(items)))
    return tuple(out)


def dict_difference(raw: dict, base: dict) -> dict:
    """The keys of ``raw`` whose values differ from ``base`` (nested mappings compared key by key)."""
    out: dict = {}
    for key, value in raw.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            nested = dict_difference(value, base[key])
            if nested:
                out[key] = nested
        elif key not in base or base[key] != value:
            out[key] = value
    return out


def row_switches(row: Row) -> dict:
    """What ``row``'s preset changes relative to ``scannet.yaml`` (its name excluded)."""
    switches = dict_difference(load_raw_config(row.preset), load_raw_config(SWITCH_BASE))
    switches.pop("name", None)
    return switches


def _row_raw(row: Row, dataset: str, out_dir: str | Path, seed: int, smoke: bool,
             overrides: list[str] | None) -> dict:
    from cad2scan.demo import SMOKE_OVERRIDES, demo_data_paths

    if dataset not in DATASETS:
        raise ConfigError(f"unknown data set {dataset!r} (known: {', '.join(DATASETS)})")
    raw = load_raw_config(dataset)
    if smoke:
        raw = merge_dicts(raw, parse_overrides(SMOKE_OVERRIDES))
    raw = merge_dicts(raw, row_switches(row))
    raw = merge_dicts(raw, parse_overrides(row.overrides_for(dataset)))
    raw["name"] = row.name
    if dataset == "demo":
        raw = merge_dicts(raw, {"data": demo_data_paths(out_dir)})
    return merge_dicts(raw, parse_overrides([f"train.seed={seed}"] + list(overrides or [])))


def _dependency_of(raw: dict) -> str | None:
    """The row named by ``train.init_from: "@<row>"`` in a raw row config, or None."""
    init_from = (raw.get("train") or {}).get("init_from")
    if isinstance(init_from, str) and init_from.startswith(ROW_REFERENCE):
        return init_from[len(ROW_REFERENCE):]
    return None


def row_dependency(row: Row, dataset: str, out_dir: str | Path, *, seed: int = 0, smoke: bool = False,
                   overrides: list[str] | None = None) -> str | None:
    """The row whose checkpoint ``row`` starts from (``train.init_from: "@<row>"``), or None."""
    return _dependency_of(_row_raw(row, dataset, out_dir, seed, smoke, overrides))


def row_checkpoint(out_dir: str | Path, row_name: str) -> Path:
    """Where the run of row ``row_name`` keeps its final weights."""
    return Path(out_dir) / "runs" / row_name / "model.safetensors"


def row_config(row: Row, dataset: str, out_dir: str | Path, *, seed: int = 0, smoke: bool = False,
               overrides: list[str] | None = None) -> RunConfig:
    """The resolved config of ``row`` on ``dataset``.

    Order (later wins): the data set's preset, the smoke settings (``smoke``), the row's
    switches, its ``data_overrides`` for ``dataset``, the demo data paths (``dataset ==
    "demo"``), ``train.seed``, ``overrides``. ``train.init_from: "@<row>"`` becomes the path
    of that row's checkpoint under ``out_dir`` (see :func:`row_checkpoint`).
    """
    raw = _row_raw(row, dataset, out_dir, seed, smoke, overrides)
    dependency = _dependency_of(raw)
    if dependency is not None:
        if not dependency or dependency == row.name:
            raise ConfigError(f"experiment row {row.name}: train.init_from {raw['train']['init_from']!r} must name "
                              f"another row")
        raw["train"]["init_from"] = str(row_checkpoint(out_dir, dependency))
    return config_from_dict(raw, f"experiment row {row.name} ({dataset})")


def _data_key(cfg: RunConfig) -> str:
    """Rows with the same data section and objective train and evaluate on the same prepared data."""
    return json.dumps([config_to_dict(cfg)["data"], cfg.train.objective], sort_keys=True)


def _preparation_config(cfg: RunConfig) -> RunConfig:
    """What to prepare for a row: objectives with CAD models prepare as ``pda`` does (the
    unlabelled scans too), so that rows of every recipe share one preparation."""
    from cad2scan.train.data import uses_rtl

    if not uses_rtl(cfg.train.objective):
        return cfg
    return config_from_dict(merge_dicts(config_to_dict(cfg), {"align": {"mode": "pda"}}))


def _init_digest(cfg: RunConfig) -> str | None:
    """SHA-256 recorded in the checkpoint a run is initialised from (None without one)."""
    if not cfg.train.init_from:
        return None
    from cad2scan.train.checkpoint import read_checkpoint_metadata

    return read_checkpoint_metadata(cfg.train.init_from).get("sha256")


def _reusable(run_dir: Path, cfg: RunConfig) -> dict | None:
    """The saved row record when ``run_dir`` holds a finished run of exactly ``cfg`` (started
    from the same initial checkpoint, when it has one)."""
    record, config_file = run_dir / "row.json", run_dir / "config.yaml"
    if not (record.is_file() and config_file.is_file() and (run_dir / "model.safetensors").is_file()):
        return None
    try:
        same = config_from_dict(read_yaml(config_file), str(config_file)) == cfg
    except ConfigError:
        return None
    if not same:
        return None
    saved = json.loads(record.read_text())
    return saved if saved.get("init_sha256") == _init_digest(cfg) else None


def _format_number(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def format_summary(table: Table, records: dict[str, dict], dataset: str) -> str:
    """Markdown summary: one line per row, our AmAP / mIoU next to the paper's number
    (AmAP, or mIoU for a table with ``metric: iou``)."""
    ref_name = REFERENCE_NAMES[REFERENCE_DATASET[dataset]]
    paper_key = METRICS[table.metric]
    header = ["row", "what", "AmAP", "mIoU", f"paper {paper_key} ({ref_name})", "seed", "train s", "eval s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] * 2 + [" ---: "] * 6) + "|"]
    for row in table.rows:
        rec = records[row.name]
        paper = rec.get("paper") or {}
        cells = [row.name, row.label.replace("|", "\\|"), _format_number(rec["AmAP"]), _format_number(rec["mIoU"]),
                 _format_number(paper.get(paper_key)), str(rec["seed"]), f"{rec['train_s']:.1f}",
                 f"{rec['eval_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_experiment(name: str, *, data: str = "demo", out_dir: str | Path = "experiments_out", seed: int = 0,
                   smoke: bool = False, overrides: list[str] | None = None, progress: bool = True,
                   retrain: bool = False, registry: Registry | None = None) -> dict:
    """Train and evaluate every row of the table (or row, or preset) ``name`` on ``data``.

    A row whose run folder already holds a finished run of the identical config is
    evaluated again without retraining unless ``retrain``. Returns the content of
    ``out_dir/results/<table>.json``.
    """
    from cad2scan.eval.evaluate import evaluate_scenes
    from cad2scan.eval.tables import format_markdown_table, format_table, write_results_json
    from cad2scan.io.atomic import atomic_write_text
    from cad2scan.train.checkpoint import load_checkpoint
    from cad2scan.train.loop import prepare_training_data, setup_runtime, train

    registry = registry or load_registry()
    table = registry.resolve(name)
    out_dir = Path(out_dir)
    started = time.perf_counter()
    configs = {row.name: row_config(row, data, out_dir, seed=seed, smoke=smoke, overrides=overrides)
               for row in table.rows}  # all checked before anything runs

    if data == "demo":
        from cad2scan.demo import ensure_demo_dataset

        ensure_demo_dataset(out_dir, seed, smoke, progress)

    prepared: dict[str, Any] = {}  # rows with the same data section and objective share the prepared data

    def data_for(cfg: RunConfig):
        key = _data_key(cfg)
        if key not in prepared:
            prepared[key] = prepare_training_data(_preparation_config(cfg), progress=progress)
        return prepared[key]

    trained: dict[str, dict] = {}  # row name -> {checkpoint, train_s, steps, final_loss, reused}

    def train_row(row_name: str, cfg: RunConfig, chain: tuple[str, ...] = ()) -> dict:
        """Train (or reuse) the run of a row, its ``@row`` dependency first."""
        if row_name in trained:
            return trained[row_name]
        if row_name in chain:
            raise ConfigError(f"experiment rows depend on each other in a cycle: {' -> '.join(chain + (row_name,))}")
        row = registry.rows.get(row_name) or next(r for r in table.rows if r.name == row_name)
        dependency = row_dependency(row, data, out_dir, seed=seed, smoke=smoke, overrides=overrides)
        if dependency is not None:
            if dependency not in registry.rows:
                raise ConfigError(f"experiment row {row_name}: train.init_from '@{dependency}' names no row "
                                  f"(known: {', '.join(registry.rows)})")
            dep_cfg = configs.get(dependency) or row_config(registry.rows[dependency], data, out_dir, seed=seed,
                                                            smoke=smoke, overrides=overrides)
            log.info("%s starts from the weights of row %s", row_name, dependency)
            train_row(dependency, dep_cfg, chain + (row_name,))
        training_data = data_for(cfg)
        setup_runtime(cfg)
        run_dir = out_dir / "runs" / row_name
        previous = None if retrain else _reusable(run_dir, cfg)
        if previous is not None:
            log.info("%s: reusing the finished run in %s", row_name, run_dir)
            done = {"checkpoint": run_dir / "model.safetensors", "train_s": previous["train_s"],
                    "steps": previous["steps"], "final_loss": previous["final_loss"], "reused": True}
        else:
            (run_dir / "row.json").unlink(missing_ok=True)  # never pair a stale record with a new run
            result = train(cfg, run_dir, data=training_data, progress=progress)
            done = {"checkpoint": result.checkpoint, "train_s": result.seconds, "steps": result.steps,
                    "final_loss": result.final_loss if result.final_loss == result.final_loss else None,
                    "reused": False}
            # A dependency that is not a row of this table gets a record without scores
            # (so that it is reused); a row of the table overwrites it after evaluation.
            atomic_write_text(run_dir / "row.json", json.dumps(_row_record(row, cfg, done, run_dir), indent=2) + "\n")
        trained[row_name] = done
        return done

    results, records, row_data = {}, {}, {}
    for row in table.rows:
        cfg = configs[row.name]
        done = train_row(row.name, cfg)
        training_data = row_data[row.name] = data_for(cfg)
        device = setup_runtime(cfg)
        run_dir = out_dir / "runs" / row.name
        eval_started = time.perf_counter()
        net = load_checkpoint(done["checkpoint"], device).net
        results[row.name] = evaluate_scenes(net, training_data.eval_scenes, training_data.categories,
                                            cfg.data.voxel_size, device, progress=progress)
        evaluation = results[row.name]
        records[row.name] = {
            **_row_record(row, cfg, done, run_dir), "eval_s": round(time.perf_counter() - eval_started, 2),
            "AmAP": evaluation.amap if evaluation.amap == evaluation.amap else None,
            "mIoU": evaluation.miou if evaluation.miou == evaluation.miou else None,
            "IoU": {name: (v if v == v else None) for name, v in evaluation.iou.items()},
            "paper": registry.reference_for(data, row.name), "config": config_to_dict(cfg),
        }
        atomic_write_text(run_dir / "row.json", json.dumps(
            {k: v for k, v in records[row.name].items() if k != "config"}, indent=2) + "\n")
        log.info("%s: AmAP %.2f mIoU %.2f (train %.1f s)", row.name, evaluation.amap, evaluation.miou,
                 done["train_s"])

    first = row_data[table.rows[0].name]
    categories = first.categories
    paper_key = METRICS[table.metric]
    reference = {f"paper {row}": {paper_key: numbers[paper_key]}
                 for row, numbers in registry.reference.get(REFERENCE_DATASET[data], {}).items()
                 if row in records and numbers.get(paper_key) is not None}
    total_s = round(time.perf_counter() - started, 1)
    ref_name = REFERENCE_NAMES[REFERENCE_DATASET[data]]
    note = (f"data: {data}{' (smoke: tiny data and steps, numbers meaningless)' if smoke else ''}; "
            f"seed {seed}; total wall-clock {total_s} s.")
    if data == "demo":
        note += f" The paper's numbers are on {ref_name}, shown for orientation only."
    per_class = "AP" if table.metric == "ap" else "IoU"
    shown = dict(results)
    chance = None
    if table.metric == "ap":  # the AP of random scores is each class's share of the points
        from cad2scan.eval.evaluate import nan_mean, positive_rates

        rates = positive_rates(first.eval_scenes, categories)
        chance = {"AP": rates, "AmAP": nan_mean(list(rates.values()))}
        shown[CHANCE_ROW] = chance
    markdown = "\n\n".join([
        f"# {table.title} (`{table.name}`)", note, "## Summary", format_summary(table, records, data),
        f"## Per-class {per_class} (%) on the held-out scans",
        format_markdown_table(shown, categories.target_names, metric=table.metric, reference=reference),
    ]) + "\n"
    results_dir = out_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results_dir / f"{table.name}.md", markdown)
    meta = {"table": table.name, "title": table.title, "data": data, "smoke": smoke, "seed": seed,
            "metric": table.metric, "total_s": total_s, "reference_data": ref_name, "rows": records,
            "eval_scenes": [p.stem for p in first.eval_scenes], "chance": chance}
    write_results_json(results_dir / f"{table.name}.json", results, meta=meta)
    print("\n" + table.title + "\n" + format_table(shown, categories.target_names, metric=table.metric,
                                                    reference=reference))
    return json.loads((results_dir / f"{table.name}.json").read_text())


def _row_record(row: Row, cfg: RunConfig, done: dict, run_dir: Path) -> dict:
    """The training part of a row's record (``row.json``)."""
    return {"preset": row.preset, "label": row.label, "seed": cfg.train.seed, "train_s": round(done["train_s"], 2),
            "eval_s": None, "steps": done["steps"], "final_loss": done["final_loss"], "reused": done["reused"],
            "AmAP": None, "mIoU": None, "paper": None, "run_dir": str(run_dir),
            "init_from": cfg.train.init_from or None, "init_sha256": _init_digest(cfg)}


def describe_registry(registry: Registry | None = None) -> str:
    """The tables and rows, one per line, for ``cad2scan experiment --list``."""
    registry = registry or load_registry()
    lines = ["tables:"]
    lines += [f"  {t.name:14s} {t.title}\n  {'':14s} rows: {', '.join(r.name for r in t.rows)}"
              for t in registry.tables.values()]
    lines.append("rows:")
    lines += [f"  {r.name:14s} {r.preset:24s} {r.label}" for r in registry.rows.values()]
    return "\n".join(lines)
