"""Results as a paper shows them: mean ± std over seeds, the best in bold, the difference from a
base row with a significance mark, as Markdown and LaTeX, and a bar plot with error bars.

Significance: a paired t-test when both rows ran the same seeds (a seed fixes data order and
initialisation, so runs pair up), else Welch's t-test (``scipy.stats``); ``*`` p < 0.05,
``**`` p < 0.01, nothing otherwise or with fewer than two runs a side.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence


def mean_std(values: Iterable, scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± std`` (sample std) of ``scale * value``; the mean alone for one value."""
    values = [scale * float(v) for v in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence], align: Sequence[str] | None = None) -> str:
    """A Markdown table; ``align`` holds a rule per column (default ``---``; ``---:`` right-aligns)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align or ["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def significance(base: dict[int, float], other: dict[int, float]) -> tuple[float | None, str]:
    """``(p, mark)`` for the difference between two rows' runs, each ``{seed: value}``."""
    from scipy import stats

    shared = sorted(set(base) & set(other))
    if len(shared) >= 2 and len(shared) == len(base) == len(other):
        a, b = [base[s] for s in shared], [other[s] for s in shared]
        if all(x == y for x, y in zip(a, b)):
            return 1.0, ""
        p = float(stats.ttest_rel(b, a).pvalue)
    elif len(base) >= 2 and len(other) >= 2:
        p = float(stats.ttest_ind(list(other.values()), list(base.values()), equal_var=False).pvalue)
    else:
        return None, ""
    if math.isnan(p):
        return None, ""
    return p, "**" if p < 0.01 else "*" if p < 0.05 else ""


@dataclass
class Cell:
    mean: float
    std: float
    n: int
    delta: float | None = None  # mean - the base row's mean
    mark: str = ""
    best: bool = False


def summarise(
    runs: dict[str, dict[int, dict[str, float]]], metrics: list[str], base: str | None, higher_is_better: dict[str, bool]
) -> dict[str, dict[str, Cell]]:
    """``{variant: {metric: Cell}}`` from ``{variant: {seed: {metric: value}}}``."""
    cells: dict[str, dict[str, Cell]] = {}
    for variant, seeds in runs.items():
        cells[variant] = {}
        for metric in metrics:
            values = {seed: m[metric] for seed, m in seeds.items() if metric in m}
            if not values:
                continue
            numbers = list(values.values())
            cell = Cell(statistics.mean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else 0.0, len(numbers))
            if base is not None and variant != base and base in runs:
                reference = {seed: m[metric] for seed, m in runs[base].items() if metric in m}
                if reference:
                    cell.delta = cell.mean - statistics.mean(reference.values())
                    cell.mark = significance(reference, values)[1]
            cells[variant][metric] = cell
    for metric in metrics:
        present = [(v, c[metric]) for v, c in cells.items() if metric in c]
        if present:
            pick = max if higher_is_better.get(metric, True) else min
            best = pick(present, key=lambda item: item[1].mean)[1].mean
            for _, cell in present:
                cell.best = cell.mean == best
    return cells


def _text(cell: Cell, scale: float, digits: int, bold: tuple[str, str], delta: bool) -> str:
    number = f"{scale * cell.mean:.{digits}f}" + (f" ± {scale * cell.std:.{digits}f}" if cell.n > 1 else "")
    if cell.best:
        number = bold[0] + number + bold[1]
    if delta and cell.delta is not None:
        number += f" ({scale * cell.delta:+.{digits}f}{cell.mark})"
    return number


def render_markdown(cells: dict[str, dict[str, Cell]], metrics: list[str], *, scale: float = 1.0, digits: int = 2) -> str:
    header = ["variant", "n", *metrics]
    rows = []
    for variant, by_metric in cells.items():
        n = max((c.n for c in by_metric.values()), default=0)
        rows.append([variant, n, *(_text(by_metric[m], scale, digits, ("**", "**"), True) if m in by_metric else "-" for m in metrics)])
    return markdown_table(header, rows, ["---", "---:", *["---:"] * len(metrics)])


def render_latex(cells: dict[str, dict[str, Cell]], metrics: list[str], *, scale: float = 1.0, digits: int = 2, caption: str = "") -> str:
    """A ``booktabs`` table (``\\usepackage{booktabs}``)."""

    def escape(text: str) -> str:
        return "".join("\\" + ch if ch in "_%&#$" else ch for ch in text)

    lines = ["\\begin{table}[t]", "\\centering", "\\begin{tabular}{l r " + "r " * len(metrics) + "}", "\\toprule",
             " & ".join(["Variant", "$n$", *(escape(m) for m in metrics)]) + " \\\\", "\\midrule"]
    for variant, by_metric in cells.items():
        n = max((c.n for c in by_metric.values()), default=0)
        values = [_text(by_metric[m], scale, digits, ("\\textbf{", "}"), True).replace("±", "$\\pm$") if m in by_metric else "--"
                  for m in metrics]
        lines.append(" & ".join([escape(variant), str(n), *values]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    if caption:
        lines.append(f"\\caption{{{escape(caption)}}}")
    lines.append("\\end{table}")
    return "\n".join(lines)


def plot_bars(cells: dict[str, dict[str, Cell]], metric: str, path: Path, *, scale: float = 1.0, title: str = "") -> Path:
    """A PNG bar chart of ``metric`` per variant, with ± std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [v for v in cells if metric in cells[v]]
    means = [scale * cells[v][metric].mean for v in variants]
    stds = [scale * cells[v][metric].std for v in variants]
    figure, axes = plt.subplots(figsize=(max(4.0, 1.1 * len(variants) + 1.5), 3.2), dpi=110)
    axes.bar(range(len(variants)), means, yerr=stds, capsize=4, color=["#4c72b0" if not cells[v][metric].best else "#dd8452" for v in variants])
    axes.set_xticks(range(len(variants)), variants, rotation=20, ha="right")
    axes.set_ylabel(metric)
    if title:
        axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
