"""Result tables like the paper's Table 1, and the results JSON file.

A row is one method: per-class AP (or IoU) in percent, then the mean (AmAP or mIoU).
Reference rows (numbers quoted from elsewhere, e.g. the paper) are listed first and
marked, so they are never mistaken for numbers measured in this run.

A row may be an :class:`~cad2scan.eval.metrics.EvalResult` or a plain dict, either
- in the form of ``EvalResult.to_dict()`` or of one method of the results JSON
  (``{"AP": {class: v}, "AmAP": v, "mIoU": v}``), or
- flat: ``{class: v, ..., "AmAP": v}``; when the mean is missing it is the mean of the
  listed classes.
Missing classes, ``None`` and ``nan`` print as ``-``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from cad2scan.eval.metrics import EvalResult
from cad2scan.io.atomic import atomic_write_text

REFERENCE_MARK = " (reference)"
_MEAN_LABEL = {"ap": "AmAP", "iou": "mIoU"}
_PER_CLASS_KEYS = {"ap": ("ap", "AP"), "iou": ("iou", "IoU")}
_MEAN_KEYS = {"ap": ("amap", "AmAP", "mean"), "iou": ("miou", "mIoU", "mean")}


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _row_values(row: EvalResult | Mapping[str, Any], class_names: list[str], metric: str) -> list[float]:
    """Per-class values of ``row`` in the order of ``class_names``, then the mean."""
    if isinstance(row, EvalResult):
        per_class = row.ap if metric == "ap" else row.iou
        mean = row.amap if metric == "ap" else row.miou
        return [_number(per_class.get(name)) for name in class_names] + [_number(mean)]

    per_class = next((row[k] for k in _PER_CLASS_KEYS[metric] if isinstance(row.get(k), Mapping)), row)
    values = [_number(per_class.get(name)) for name in class_names]
    mean_key = next((k for k in _MEAN_KEYS[metric] if k in row), None)
    if mean_key is not None:
        mean = _number(row[mean_key])
    else:
        finite = [v for v in values if not math.isnan(v)]
        mean = sum(finite) / len(finite) if finite else math.nan
    return values + [mean]


def _format_value(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def _table_cells(
    rows: Mapping[str, EvalResult | Mapping[str, Any]],
    class_names: list[str],
    metric: str,
    reference: Mapping[str, Mapping[str, Any]] | None,
) -> tuple[list[str], list[list[str]], int]:
    """Header, body cells (reference rows first) and the number of reference rows."""
    if metric not in _MEAN_LABEL:
        raise ValueError(f"metric must be one of {sorted(_MEAN_LABEL)}, got {metric!r}")
    header = ["method", *class_names, _MEAN_LABEL[metric]]
    body: list[list[str]] = []
    for name, row in (reference or {}).items():
        body.append([name + REFERENCE_MARK] + [_format_value(v) for v in _row_values(row, class_names, metric)])
    for name, row in rows.items():
        body.append([name] + [_format_value(v) for v in _row_values(row, class_names, metric)])
    return header, body, len(reference or {})


def format_table(
    rows: Mapping[str, EvalResult | Mapping[str, Any]],
    class_names: list[str],
    metric: str = "ap",
    reference: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """Fixed-width text table: one line per method, columns = classes then the mean.

    Args:
        rows: method name -> measured result.
        class_names: the class columns, in order.
        metric: ``"ap"`` (mean column AmAP) or ``"iou"`` (mean column mIoU).
        reference: method name -> quoted numbers; printed first, marked "(reference)".

    Returns:
        The table as text (no trailing newline), values with 2 decimals, ``-`` for nan.
    """
    header, body, num_reference = _table_cells(rows, class_names, metric, reference)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    widths[1:] = [max(w, 6) for w in widths[1:]]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:]))
        return "  ".join([first, *rest])

    rule = "-" * len(line(header))
    lines = [line(header), rule]
    for index, cells in enumerate(body):
        if num_reference and index == num_reference:
            lines.append(rule)
        lines.append(line(cells))
    if num_reference:
        lines.append(f"{REFERENCE_MARK.strip()}: quoted numbers, not measured in this run")
    return "\n".join(lines)


def format_markdown_table(
    rows: Mapping[str, EvalResult | Mapping[str, Any]],
    class_names: list[str],
    metric: str = "ap",
    reference: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """The table of :func:`format_table` as a Markdown table (same cells, same order)."""
    header, body, num_reference = _table_cells(rows, class_names, metric, reference)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    lines = [line(header), "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
    lines += [line(cells) for cells in body]
    if num_reference:
        lines += ["", f"{REFERENCE_MARK.strip()}: quoted numbers, not measured in this run"]
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    """Recursively turn nan/inf into None and numpy scalars/arrays into Python values."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_results_json(
    path: str | Path,
    methods: Mapping[str, EvalResult],
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Write ``{"methods": {name: {"AmAP", "AP": {class: v}, "mIoU"}}, "pr_curves": {...}, "meta": {...}}``.

    AP, AmAP and mIoU are in percent; nan (a class absent from the ground truth) is
    written as ``null``. ``"pr_curves"`` (``{method: {class: {"precision": [...],
    "recall": [...]}}}``, fractions, in order of decreasing threshold) is present only
    when some result carries curves; ``"meta"`` only when given. Written atomically.
    """
    document: dict[str, Any] = {
        "methods": {
            name: {
                "AmAP": _json_safe(float(result.amap)),
                "AP": {cls: _json_safe(float(v)) for cls, v in result.ap.items()},
                "mIoU": _json_safe(float(result.miou)),
            }
            for name, result in methods.items()
        }
    }
    curves = {name: result.pr_curves for name, result in methods.items() if getattr(result, "pr_curves", None)}
    if curves:
        document["pr_curves"] = _json_safe(curves)
    if meta is not None:
        document["meta"] = _json_safe(meta)
    atomic_write_text(path, json.dumps(document, indent=2, allow_nan=False) + "\n")
