"""``cad2scan report``: one Markdown report with plots from the results of experiments or the demo.

Input: a folder written by ``cad2scan experiment`` (``DIR/results/<table>.json``), by
``cad2scan demo`` (``DIR/results.json``), or one such JSON file (``cad2scan evaluate --out``
files work too). Output (default ``DIR/report``):

    report.md                     every table: ours next to the paper's numbers, seeds, wall-clock
    <table>_amap.png              AmAP per row, the paper's AmAP as markers where known
    <table>_per_class_ap.png      per-class AP, one bar per row, grouped by class
    <table>_pr_curves.png         precision-recall curves, one panel per class, one line per row

Results files from before PR curves were stored have no ``pr_curves``: that plot is skipped
and the report says so. The same input gives the same ``report.md``, byte for byte. Plots
use the Agg backend (no display needed); class colours are those of the prediction PLYs and
of ``cad2scan render``.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cad2scan.errors import DataFormatError
from cad2scan.eval.tables import format_markdown_table
from cad2scan.io.atomic import atomic_write_bytes, atomic_write_text
from cad2scan.io.predictions import class_colors

DEMO_LABELS = {"baseline": "single CAD models, no PDA, no FA", "pda": "PDA", "pda_fa": "PDA + FA (full method)"}
# Row colours (Okabe-Ito): distinct from each other, for rows / methods in every plot.
ROW_COLORS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
PAPER_MARKER_COLOR = "#000000"


@dataclass
class ResultRow:
    """One method / ablation row. Numbers in percent; None when unknown."""

    name: str
    label: str
    amap: float | None
    miou: float | None
    ap: dict[str, float | None]
    paper_amap: float | None = None
    paper_source: str = ""
    seed: int | None = None
    train_s: float | None = None
    eval_s: float | None = None


@dataclass
class ResultTable:
    """The rows of one results file.

    name: file stem (prefix of the plot files); title; kind: experiment | demo | evaluate;
    class_names: the AP columns in order; note: data set, seeds, wall-clock;
    reference_name: the data set the paper's numbers are on ("" when none);
    pr_curves: row -> class -> {"precision": [...], "recall": [...]} (None: not stored).
    """

    name: str
    title: str
    kind: str
    source: str
    class_names: list[str]
    rows: list[ResultRow]
    note: str = ""
    reference_name: str = ""
    pr_curves: dict[str, dict[str, dict[str, list[float]]]] | None = None


# ------------------------------------------------------------------------------- input
def find_results_files(path: str | Path) -> list[Path]:
    """The results JSON files of a demo folder, an experiment folder, or the file itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataFormatError(path, "no such results folder or file")
    files = []
    if (path / "results.json").is_file():
        files.append(path / "results.json")
    if (path / "results").is_dir():
        files += sorted((path / "results").glob("*.json"))
    if not files:
        raise DataFormatError(path, "no results found: expected results.json (cad2scan demo) or "
                                    "results/<table>.json (cad2scan experiment)")
    return files


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _read_json(path: Path) -> dict:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataFormatError(path, f"unreadable results JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("methods"), dict):
        raise DataFormatError(path, "not a cad2scan results file (no 'methods' mapping)")
    return document


def load_results_table(path: str | Path, display_name: str | None = None) -> ResultTable:
    """Parse one results JSON (experiment, demo or evaluate) into a :class:`ResultTable`."""
    path = Path(path)
    document = _read_json(path)
    meta = document.get("meta") or {}
    methods = document["methods"]
    class_names: list[str] = []
    for method in methods.values():
        for name in (method.get("AP") or {}):
            if name not in class_names:
                class_names.append(name)
    records = meta.get("rows") if isinstance(meta.get("rows"), dict) else None
    timings = meta.get("timings") or {}
    rows = []
    for name, method in methods.items():
        if not isinstance(method, dict):
            raise DataFormatError(path, f"method {name!r} is not a mapping")
        row = ResultRow(name, "", _number(method.get("AmAP")), _number(method.get("mIoU")),
                        {c: _number((method.get("AP") or {}).get(c)) for c in class_names})
        if records is not None:
            record = records.get(name) or {}
            paper = record.get("paper") or {}
            row.label = str(record.get("label") or "")
            row.paper_amap, row.paper_source = _number(paper.get("AmAP")), str(paper.get("source") or "")
            row.seed = record.get("seed")
            row.train_s, row.eval_s = _number(record.get("train_s")), _number(record.get("eval_s"))
        else:
            row.label = DEMO_LABELS.get(name, "") if "timings" in meta else ""
            row.seed = meta.get("seed")
            row.train_s = _number(timings.get(f"{name}_train_s"))
        rows.append(row)

    smoke = " (smoke: tiny data and steps, numbers meaningless)" if meta.get("smoke") else ""
    if records is not None:
        kind = "experiment"
        title = f"{meta.get('title') or path.stem} (`{meta.get('table') or path.stem}`)"
        note = f"data: {meta.get('data', '?')}{smoke}; seed {meta.get('seed', '?')}; " \
               f"total wall-clock {meta.get('total_s', '?')} s."
        reference = str(meta.get("reference_data") or "")
        if meta.get("data") == "demo" and reference:
            note += f" The paper's numbers are on {reference}, shown for orientation only."
    elif "timings" in meta:
        kind, title, reference = "demo", "Demo: baseline vs PDA vs PDA + FA", ""
        note = f"data: embedded demo rooms{smoke}; seed {meta.get('seed', '?')}; " \
               f"total wall-clock {timings.get('total_s', '?')} s."
    else:
        kind, title, reference = "evaluate", f"Evaluation ({path.stem})", ""
        note = f"checkpoint: `{meta['checkpoint']}`." if meta.get("checkpoint") else ""
    curves = document.get("pr_curves")
    return ResultTable(path.stem, title, kind, display_name or path.name, class_names, rows, note, reference,
                       curves if isinstance(curves, dict) else None)


# ------------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def _row_color(index: int) -> str:
    return ROW_COLORS[index % len(ROW_COLORS)]


def target_class_colors(num_targets: int) -> np.ndarray:
    """(T, 3) float in [0, 1]: the colours of target classes 0..T-1 in renders and prediction PLYs."""
    return class_colors(num_targets + 1)[:-1].astype(np.float64) / 255.0


def plot_amap(table: ResultTable, path: Path) -> None:
    """Bar per row (our AmAP), the paper's AmAP as a marker where known."""
    plt = _pyplot()
    names = [row.name for row in table.rows]
    fig, ax = plt.subplots(figsize=(max(5.0, 2.6 + 0.9 * len(names)), 3.6))
    x = np.arange(len(names))
    ours = [row.amap if row.amap is not None else 0.0 for row in table.rows]
    bars = ax.bar(x, ours, color=[_row_color(i) for i in range(len(names))], width=0.6, label="ours")
    for bar, row in zip(bars, table.rows):
        text = "-" if row.amap is None else f"{row.amap:.2f}"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=8, xytext=(0, 2), textcoords="offset points")
    paper = [(i, row.paper_amap) for i, row in enumerate(table.rows) if row.paper_amap is not None]
    if paper:
        ax.scatter([i for i, _ in paper], [v for _, v in paper], marker="D", color=PAPER_MARKER_COLOR, zorder=3,
                   label=f"paper ({table.reference_name})" if table.reference_name else "paper")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    top = max(ours + [v for _, v in paper] + [1.0])
    ax.set_ylim(0, top * 1.12)
    ax.set_xticks(x, names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center",
                  fontsize=8)
    ax.set_ylabel("AmAP (%)")
    ax.set_title(f"{table.name}: AmAP per row", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_per_class_ap(table: ResultTable, path: Path) -> None:
    """Per-class AP grouped by class (one bar per row); class names on their class colour."""
    plt = _pyplot()
    classes, rows = table.class_names, table.rows
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + 0.28 * len(classes) * max(len(rows), 2)), 3.8))
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(classes))
    for i, row in enumerate(rows):
        values = [row.ap.get(c) for c in classes]
        ax.bar(x - 0.4 + width * (i + 0.5), [v if v is not None else 0.0 for v in values], width,
               color=_row_color(i), label=row.name)
    ax.set_xticks(x, classes, rotation=30, ha="right", fontsize=8)
    for label, color in zip(ax.get_xticklabels(), target_class_colors(len(classes))):
        label.set_bbox({"facecolor": color, "alpha": 0.45, "edgecolor": "none", "pad": 1.5})
    ax.set_ylabel("AP (%)")
    ax.set_title(f"{table.name}: per-class AP", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    _save(fig, path)


def plot_pr_curves(table: ResultTable, path: Path) -> bool:
    """One panel per class, one precision-recall line per row. False (nothing written) when
    the results file has no curves."""
    curves = table.pr_curves or {}
    classes = [c for c in table.class_names if any(c in (curves.get(r.name) or {}) for r in table.rows)]
    if not classes:
        return False
    plt = _pyplot()
    cols = min(4, len(classes))
    nrows = -(-len(classes) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.0 * cols, 2.7 * nrows + 0.5), squeeze=False)
    colors = target_class_colors(len(table.class_names))
    for panel, name in enumerate(classes):
        ax = axes[panel // cols][panel % cols]
        for i, row in enumerate(table.rows):
            curve = (curves.get(row.name) or {}).get(name)
            if not curve:
                continue
            ap = row.ap.get(name)
            ax.plot(curve["recall"], curve["precision"], color=_row_color(i), linewidth=1.2, drawstyle="steps-pre",
                    label=f"{row.name} ({'-' if ap is None else f'{ap:.1f}'})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(name, fontsize=9, bbox={"facecolor": colors[table.class_names.index(name)], "alpha": 0.45,
                                             "edgecolor": "none", "pad": 1.5})
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper right", title="row (AP %)", title_fontsize=6)
        if panel % cols == 0:
            ax.set_ylabel("precision", fontsize=8)
        if panel // cols == nrows - 1:
            ax.set_xlabel("recall", fontsize=8)
    for panel in range(len(classes), nrows * cols):
        axes[panel // cols][panel % cols].set_axis_off()
    fig.suptitle(f"{table.name}: precision-recall per class", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return True


# ---------------------------------------------------------------------------- markdown
def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def summary_markdown(table: ResultTable) -> str:
    """One line per row: AmAP, mIoU, the paper's AmAP and ours minus it (columns left out when
    the paper has no number for any row), seed, wall-clock."""
    reference = f" ({table.reference_name})" if table.reference_name else ""
    with_paper = any(row.paper_amap is not None for row in table.rows) or bool(table.reference_name)
    header = ["row", "what", "AmAP", "mIoU"] + ([f"paper AmAP{reference}", "ours - paper"] if with_paper else []) \
        + ["seed", "train s", "eval s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] * 2 + [" ---: "] * (len(header) - 2)) + "|"]
    for row in table.rows:
        paper = _cell(row.paper_amap)
        if row.paper_amap is not None and row.paper_source:
            paper += f" ({row.paper_source})"
        delta = (f"{row.amap - row.paper_amap:+.2f}" if row.amap is not None and row.paper_amap is not None else "-")
        cells = [row.name, row.label.replace("|", "\\|") or "-", _cell(row.amap), _cell(row.miou)] \
            + ([paper, delta] if with_paper else []) \
            + ["-" if row.seed is None else str(row.seed), _seconds(row.train_s), _seconds(row.eval_s)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_markdown(table: ResultTable, images: dict[str, str | None]) -> str:
    """The section of one results file; ``images``: plot kind -> file name (None: skipped)."""
    per_class = {row.name: {"AP": row.ap, "AmAP": row.amap} for row in table.rows}
    reference = {f"paper {row.name}": {"AmAP": row.paper_amap} for row in table.rows if row.paper_amap is not None}
    parts = [f"## {table.title}", f"Source: `{table.source}`. {table.note}".strip(), "### Summary",
             summary_markdown(table), "### Per-class AP (%)",
             format_markdown_table(per_class, table.class_names, reference=reference or None), "### Plots"]
    captions = {"amap": "AmAP per row (paper's AmAP as markers where known)",
                "per_class_ap": "per-class AP", "pr_curves": "precision-recall curves per class"}
    for kind, caption in captions.items():
        name = images.get(kind)
        if name:
            parts.append(f"![{table.name}: {caption}]({name})")
        elif kind == "pr_curves":
            parts.append("_Precision-recall curves: not in this results file (written before cad2scan stored "
                         "them); evaluate again to get them._")
    return "\n\n".join(parts)


def write_report(source: str | Path, out_dir: str | Path | None = None) -> dict:
    """Write ``report.md`` and the plots of every results file under ``source`` into ``out_dir``
    (default ``source/report``, or beside a results file). Returns ``{"report": path,
    "plots": [names], "skipped": [notes], "tables": [names]}``."""
    source = Path(source)
    files = find_results_files(source)
    base = source if source.is_dir() else source.parent
    out_dir = Path(out_dir) if out_dir is not None else base / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = [load_results_table(f, f.relative_to(base).as_posix()) for f in files]
    prefixes = _unique_prefixes([t.name for t in tables])

    sections, plots, skipped = [], [], []
    for table, prefix in zip(tables, prefixes):
        images: dict[str, str | None] = {"amap": f"{prefix}_amap.png", "per_class_ap": f"{prefix}_per_class_ap.png",
                                         "pr_curves": f"{prefix}_pr_curves.png"}
        plot_amap(table, out_dir / images["amap"])
        if table.class_names:
            plot_per_class_ap(table, out_dir / images["per_class_ap"])
        else:
            images["per_class_ap"] = None
        if not plot_pr_curves(table, out_dir / images["pr_curves"]):
            images["pr_curves"] = None
            skipped.append(f"{table.source}: no precision-recall curves stored; PR plot skipped")
        plots += [name for name in images.values() if name]
        sections.append(table_markdown(table, images))

    header = ["# cad2scan report", f"Results read from {len(files)} file(s): "
              + ", ".join(f"`{t.source}`" for t in tables) + ". AP, AmAP and mIoU in percent; "
              "\"paper\" numbers are quoted from the paper, not measured here."]
    atomic_write_text(out_dir / "report.md", "\n\n".join(header + sections) + "\n")
    return {"report": str(out_dir / "report.md"), "plots": plots, "skipped": skipped,
            "tables": [t.name for t in tables]}


def _unique_prefixes(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "results"
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return out
