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
REFERENCE_NAMES = {"scannet": "ScanNet v2", "s3dis": "S3DIS Area 5"}


@dataclass(frozen=True)
class Row:
    """One row of a table: a name, the preset that defines it, and a human label."""

    name: str
    preset: str
    label: str = ""


@dataclass(frozen=True)
class Table:
    """A named list of rows."""

    name: str
    title: str
    rows: tuple[Row, ...]


@dataclass
class Registry:
    """The rows, tables and paper reference numbers of ``experiment_tables.yaml``.

    Attributes:
        rows: row name -> Row.
        tables: table name -> Table.
        reference: data set (scannet | s3dis) -> row name -> {"AmAP": float, "source": str}.
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
        rows[str(name)] = Row(str(name), entry["preset"], str(entry.get("label", "")))
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
        tables[str(name)] = Table(str(name), str(entry.get("title", name)), tuple(rows[r] for r in names))
    reference = raw.get("reference") or {}
    for dataset, by_row in reference.items():
        if dataset not in REFERENCE_NAMES:
            raise ConfigError(f"{path}: reference data set {dataset!r} is not one of {sorted(REFERENCE_NAMES)}")
        for row, numbers in (by_row or {}).items():
            if row not in rows or not isinstance(numbers, dict) or not isinstance(numbers.get("AmAP"), (int, float)):
                raise ConfigError(f"{path}: reference {dataset}.{row} needs a known row and a number 'AmAP'")
    return Registry(rows, tables, {d: dict(r or {}) for d, r in reference.items()})


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


def row_config(row: Row, dataset: str, out_dir: str | Path, *, seed: int = 0, smoke: bool = False,
               overrides: list[str] | None = None) -> RunConfig:
    """The resolved config of ``row`` on ``dataset``.

    Order (later wins): the data set's preset, the smoke settings (``smoke``), the row's
    switches, the demo data paths (``dataset == "demo"``), ``train.seed``, ``overrides``.
    """
    from cad2scan.demo import SMOKE_OVERRIDES, demo_data_paths

    if dataset not in DATASETS:
        raise ConfigError(f"unknown data set {dataset!r} (known: {', '.join(DATASETS)})")
    raw = load_raw_config(dataset)
    if smoke:
        raw = merge_dicts(raw, parse_overrides(SMOKE_OVERRIDES))
    raw = merge_dicts(raw, row_switches(row))
    raw["name"] = row.name
    if dataset == "demo":
        raw = merge_dicts(raw, {"data": demo_data_paths(out_dir)})
    raw = merge_dicts(raw, parse_overrides([f"train.seed={seed}"] + list(overrides or [])))
    return config_from_dict(raw, f"experiment row {row.name} ({dataset})")


def _data_key(cfg: RunConfig) -> str:
    return json.dumps(config_to_dict(cfg)["data"], sort_keys=True)


def _reusable(run_dir: Path, cfg: RunConfig) -> dict | None:
    """The saved row record when ``run_dir`` holds a finished run of exactly ``cfg``."""
    record, config_file = run_dir / "row.json", run_dir / "config.yaml"
    if not (record.is_file() and config_file.is_file() and (run_dir / "model.safetensors").is_file()):
        return None
    try:
        same = config_from_dict(read_yaml(config_file), str(config_file)) == cfg
    except ConfigError:
        return None
    return json.loads(record.read_text()) if same else None


def _format_number(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def format_summary(table: Table, records: dict[str, dict], dataset: str) -> str:
    """Markdown summary: one line per row, our AmAP / mIoU next to the paper's AmAP."""
    ref_name = REFERENCE_NAMES[REFERENCE_DATASET[dataset]]
    header = ["row", "what", "AmAP", "mIoU", f"paper AmAP ({ref_name})", "seed", "train s", "eval s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] * 2 + [" ---: "] * 6) + "|"]
    for row in table.rows:
        rec = records[row.name]
        paper = rec.get("paper") or {}
        cells = [row.name, row.label.replace("|", "\\|"), _format_number(rec["AmAP"]), _format_number(rec["mIoU"]),
                 _format_number(paper.get("AmAP")), str(rec["seed"]), f"{rec['train_s']:.1f}",
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

    prepared: dict[str, Any] = {}  # rows that share a data section share the prepared data
    results, records = {}, {}
    for row in table.rows:
        cfg = configs[row.name]
        key = _data_key(cfg)
        if key not in prepared:
            pda_cfg = config_from_dict(merge_dicts(config_to_dict(cfg), {"align": {"mode": "pda"}}))
            prepared[key] = prepare_training_data(pda_cfg, progress=progress)
        training_data = prepared[key]
        device = setup_runtime(cfg)
        run_dir = out_dir / "runs" / row.name
        previous = None if retrain else _reusable(run_dir, cfg)
        if previous is not None:
            log.info("%s: reusing the finished run in %s", row.name, run_dir)
            checkpoint, train_s, steps, final_loss = (run_dir / "model.safetensors", previous["train_s"],
                                                      previous["steps"], previous["final_loss"])
        else:
            (run_dir / "row.json").unlink(missing_ok=True)  # never pair a stale record with a new run
            result = train(cfg, run_dir, data=training_data, progress=progress)
            checkpoint, train_s, steps, final_loss = result.checkpoint, result.seconds, result.steps, result.final_loss
        eval_started = time.perf_counter()
        net = load_checkpoint(checkpoint, device).net
        results[row.name] = evaluate_scenes(net, training_data.eval_scenes, training_data.categories,
                                            cfg.data.voxel_size, device, progress=progress)
        evaluation = results[row.name]
        records[row.name] = {
            "preset": row.preset, "label": row.label, "seed": cfg.train.seed, "train_s": round(train_s, 2),
            "eval_s": round(time.perf_counter() - eval_started, 2), "steps": steps,
            "final_loss": final_loss if final_loss == final_loss else None, "reused": previous is not None,
            "AmAP": evaluation.amap if evaluation.amap == evaluation.amap else None,
            "mIoU": evaluation.miou if evaluation.miou == evaluation.miou else None,
            "paper": registry.reference_for(data, row.name), "run_dir": str(run_dir),
            "config": config_to_dict(cfg),
        }
        atomic_write_text(run_dir / "row.json", json.dumps(
            {k: v for k, v in records[row.name].items() if k != "config"}, indent=2) + "\n")
        log.info("%s: AmAP %.2f mIoU %.2f (train %.1f s)", row.name, evaluation.amap, evaluation.miou, train_s)

    categories = next(iter(prepared.values())).categories
    reference = {f"paper {row}": {"AmAP": numbers["AmAP"]}
                 for row, numbers in registry.reference.get(REFERENCE_DATASET[data], {}).items()
                 if row in records}
    total_s = round(time.perf_counter() - started, 1)
    ref_name = REFERENCE_NAMES[REFERENCE_DATASET[data]]
    note = (f"data: {data}{' (smoke: tiny data and steps, numbers meaningless)' if smoke else ''}; "
            f"seed {seed}; total wall-clock {total_s} s.")
    if data == "demo":
        note += f" The paper's numbers are on {ref_name}, shown for orientation only."
    markdown = "\n\n".join([
        f"# {table.title} (`{table.name}`)", note, "## Summary", format_summary(table, records, data),
        "## Per-class AP (%) on the held-out scans", format_markdown_table(results, categories.target_names,
                                                                            reference=reference),
    ]) + "\n"
    results_dir = out_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results_dir / f"{table.name}.md", markdown)
    meta = {"table": table.name, "title": table.title, "data": data, "smoke": smoke, "seed": seed,
            "total_s": total_s, "reference_data": ref_name, "rows": records,
            "eval_scenes": [p.stem for p in next(iter(prepared.values())).eval_scenes]}
    write_results_json(results_dir / f"{table.name}.json", results, meta=meta)
    print("\n" + table.title + "\n" + format_table(results, categories.target_names, reference=reference))
    return json.loads((results_dir / f"{table.name}.json").read_text())


def describe_registry(registry: Registry | None = None) -> str:
    """The tables and rows, one per line, for ``cad2scan experiment --list``."""
    registry = registry or load_registry()
    lines = ["tables:"]
    lines += [f"  {t.name:14s} {t.title}\n  {'':14s} rows: {', '.join(r.name for r in t.rows)}"
              for t in registry.tables.values()]
    lines.append("rows:")
    lines += [f"  {r.name:14s} {r.preset:24s} {r.label}" for r in registry.rows.values()]
    return "\n".join(lines)
