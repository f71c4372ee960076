"""``instructrec ablate SPEC.yaml``: a base config's named variants x seeds, the table a paper shows.

The spec (YAML)::

    name: distill_sst2                          # the W&B group and the default output folder
    base: configs/distill/sst2_minilm6_to_3.yaml
    overlays: []                                # configs merged onto the base in every run
    overrides: {}                               # dotted keys set in every run
    seeds: [0, 1, 2]
    seed_keys: []                               # dotted keys set to each run's seed (e.g. a data split's seed)
    metrics: [test/score]                       # tabulated (the first is plotted); default every test/ metric
    lower_is_better: []                         # metrics where less is better (the bold goes to the least)
    scale: 100                                  # table values are scaled by this (e.g. accuracy in %)
    digits: 1
    processes: 1                                # runs at once (each its own process when > 1)
    out: runs/ablate/distill_sst2
    variants:                                   # the first is the reference row, unless `reference` names one
      full: {}
      no_soft: {overrides: {model.init_args.soft_weight: 0.0}}
      hidden_attention: {overlays: [configs/distill/variants/hidden_attention.yaml]}
      single_task: {base: configs/other.yaml}   # a variant may start from another config

Every run is ``instructrec fit`` with ``test_after_fit`` under ``<out>/runs/<variant>/seed-<s>/``;
its test metrics (with its arguments and the git commit its process loaded) go to ``metrics.json`` there, and a run that has one is not run again (resume).
Then ``results.csv`` (a row per run, with its wall time in seconds), ``results.md`` and
``results.tex`` (mean ± std, n, the best in bold, the difference from the reference row with
``*``/``**`` for p < 0.05/0.01, see :mod:`.tables`), ``results.png`` (the first metric, with error bars). Runs log to W&B when their
config does, grouped by ``name`` with the variant as job type and the seed as a tag, and the table
is logged as a W&B Table.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructrec.errors import InputError
from instructrec.studies import tables
from instructrec.studies.runs import RunSpec, code_version, read_yaml, run

SPEC_KEYS = {"name", "base", "overlays", "overrides", "seeds", "seed_keys", "metrics", "lower_is_better", "scale",
             "digits", "processes", "out", "variants", "reference"}
VARIANT_KEYS = {"base", "overlays", "overrides"}
METRICS_FILE = "metrics.json"


@dataclass
class Variant:
    name: str
    overlays: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    base: str | None = None  # the spec's base when None


@dataclass
class AblationSpec:
    name: str
    base: str
    variants: list[Variant]
    seeds: list[int] = field(default_factory=lambda: [0])
    seed_keys: list[str] = field(default_factory=list)
    overlays: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    metrics: list[str] | None = None
    lower_is_better: list[str] = field(default_factory=list)
    scale: float = 1.0
    digits: int = 2
    processes: int = 1
    out: Path | None = None
    reference: str | None = None

    @classmethod
    def read(cls, path: str | Path) -> "AblationSpec":
        data = read_yaml(path, "ablation spec")
        unknown = sorted(set(data) - SPEC_KEYS)
        if unknown:
            raise InputError(f"unknown key(s) {unknown}; an ablation spec takes {sorted(SPEC_KEYS)}", source=str(path))
        for key in ("name", "base", "variants"):
            if key not in data:
                raise InputError(f"the ablation spec needs {key!r}", source=str(path))
        if not isinstance(data["variants"], dict) or not data["variants"]:
            raise InputError("variants must be a mapping of names to {base, overlays, overrides}", source=str(path))
        variants = []
        for name, options in data["variants"].items():
            options = options or {}
            bad = sorted(set(options) - VARIANT_KEYS)
            if bad:
                raise InputError(f"variant {name!r}: unknown key(s) {bad}; a variant takes {sorted(VARIANT_KEYS)}", source=str(path))
            variants.append(Variant(str(name), list(options.get("overlays") or []), dict(options.get("overrides") or {}),
                                    str(options["base"]) if options.get("base") else None))
        spec = cls(
            name=str(data["name"]), base=str(data["base"]), variants=variants,
            seeds=[int(s) for s in data.get("seeds", [0])], seed_keys=[str(k) for k in data.get("seed_keys") or []],
            overlays=list(data.get("overlays") or []),
            overrides=dict(data.get("overrides") or {}), metrics=data.get("metrics"),
            lower_is_better=list(data.get("lower_is_better") or []), scale=float(data.get("scale", 1.0)),
            digits=int(data.get("digits", 2)), processes=int(data.get("processes", 1)),
            out=Path(data["out"]) if data.get("out") else None, reference=data.get("reference"),
        )
        if spec.reference is not None and spec.reference not in {v.name for v in variants}:
            raise InputError(f"reference {spec.reference!r} is not a variant", source=str(path))
        return spec

    @property
    def reference_variant(self) -> str:
        return self.reference or self.variants[0].name


class Ablation:
    """Runs and reports one spec (see the module docstring)."""

    def __init__(self, spec: AblationSpec, out: Path | None = None) -> None:
        self.spec = spec
        self.out = Path(out or spec.out or Path("runs") / "ablate" / spec.name)

    def run_specs(self) -> list[tuple[str, int, RunSpec]]:
        """Every ``(variant, seed, run)``, seed-major (a stopped ablation has every variant's first seeds)."""
        runs = []
        for seed in self.spec.seeds:
            for variant in self.spec.variants:
                root = self.out / "runs" / _folder_name(variant.name) / f"seed-{seed}"
                runs.append((variant.name, seed, RunSpec(
                    variant.base or self.spec.base, root, seed=seed, overlays=[*self.spec.overlays, *variant.overlays],
                    overrides={**self.spec.overrides, **variant.overrides, **dict.fromkeys(self.spec.seed_keys, seed)},
                    test=True,
                    logger={"group": self.spec.name, "job_type": variant.name, "tags": [self.spec.name, f"seed-{seed}"],
                            "name": f"{self.spec.name}-{variant.name}-seed{seed}"},
                )))
        return runs

    def run(self, progress: bool = True) -> dict[str, dict[int, dict[str, float]]]:
        """Every run that has no ``metrics.json`` yet; ``{variant: {seed: metrics}}`` of all."""
        from concurrent.futures import ProcessPoolExecutor, as_completed
        import multiprocessing

        from instructrec.studies.progress import RunsProgress

        planned = self.run_specs()
        pending = [(v, s, r) for v, s, r in planned if not (r.root / METRICS_FILE).is_file()]
        with RunsProgress(f"instructrec ablate: {self.spec.name}", len(planned), enabled=progress) as view:
            done = len(planned) - len(pending)
            view.show(done, 0, self._best_text())
            if self.spec.processes <= 1:
                for variant, seed, spec in pending:
                    view.show(done, 1, self._best_text())
                    with view.paused():
                        run_and_record(spec)
                    done += 1
                    view.show(done, 0, self._best_text())
            else:
                threads = max(1, (os.cpu_count() or 1) // self.spec.processes)
                context = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(self.spec.processes, mp_context=context) as pool:
                    futures = [pool.submit(run_and_record, spec, threads) for _, _, spec in pending]
                    for future in as_completed(futures):
                        future.result()
                        done += 1
                        view.show(done, sum(not f.done() for f in futures), self._best_text())
        return self.collect()

    def collect(self) -> dict[str, dict[int, dict[str, float]]]:
        results: dict[str, dict[int, dict[str, float]]] = {}
        for variant, seed, spec in self.run_specs():
            path = spec.root / METRICS_FILE
            if path.is_file():
                results.setdefault(variant, {})[seed] = json.loads(path.read_text(encoding="utf-8"))["metrics"]
        return results

    def seconds(self) -> dict[tuple[str, int], float]:
        """Each finished run's wall time (fit and test), ``{(variant, seed): seconds}``."""
        times = {}
        for variant, seed, spec in self.run_specs():
            path = spec.root / METRICS_FILE
            if path.is_file():
                times[(variant, seed)] = float(json.loads(path.read_text(encoding="utf-8"))["seconds"])
        return times

    def metrics(self, results: dict) -> list[str]:
        if self.spec.metrics:
            return list(self.spec.metrics)
        names = sorted({m for seeds in results.values() for values in seeds.values() for m in values})
        return [m for m in names if m.startswith("test/")]

    def _best_text(self) -> str:
        results = self.collect()
        if not results:
            return "-"
        metric = self.metrics(results)[0] if self.metrics(results) else None
        if metric is None:
            return "-"
        cells = tables.summarise(results, [metric], None, {metric: metric not in self.spec.lower_is_better})
        best = [(v, c[metric]) for v, c in cells.items() if metric in c and c[metric].best]
        return f"{best[0][0]}: {self.spec.scale * best[0][1].mean:.{self.spec.digits}f}" if best else "-"

    def report(self, results: dict, command: str = "") -> dict[str, Path]:
        """Write results.csv, results.md, results.tex and results.png; log the table to W&B."""
        metrics = self.metrics(results)
        if not metrics:
            raise InputError(f"the runs of {self.spec.name!r} logged no test metrics: give the base config's data a test split")
        self.out.mkdir(parents=True, exist_ok=True)
        higher = {m: m not in self.spec.lower_is_better for m in metrics}
        cells = tables.summarise(results, metrics, self.spec.reference_variant, higher)
        paths = {"csv": self.out / "results.csv", "md": self.out / "results.md", "tex": self.out / "results.tex",
                 "png": self.out / "results.png"}
        seconds = self.seconds()
        with paths["csv"].open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["variant", "seed", *metrics, "seconds"])
            for variant, seeds in results.items():
                for seed, values in sorted(seeds.items()):
                    writer.writerow([variant, seed, *(values.get(m, "") for m in metrics),
                                     round(seconds.get((variant, seed), float("nan")), 1)])
        scale, digits = self.spec.scale, self.spec.digits
        note = (f"Mean ± std over seeds {self.spec.seeds} (values x {scale:g}); bold: the best; in brackets the difference "
                f"from `{self.spec.reference_variant}` with * p < 0.05, ** p < 0.01 (paired t-test on shared seeds, else Welch).")
        own_bases = "".join(f" `{v.name}` starts from `{v.base}`." for v in self.spec.variants if v.base)
        markdown = [f"# Ablation: {self.spec.name}", "", f"Base config: `{self.spec.base}`.{own_bases}", "",
                    tables.render_markdown(cells, metrics, scale=scale, digits=digits), "", note, ""]
        if command:
            markdown += ["Command:", "", "```bash", command, "```", ""]
        paths["md"].write_text("\n".join(markdown), encoding="utf-8")
        paths["tex"].write_text(tables.render_latex(cells, metrics, scale=scale, digits=digits,
                                                    caption=f"{self.spec.name}: {note}") + "\n", encoding="utf-8")
        tables.plot_bars(cells, metrics[0], paths["png"], scale=scale, title=self.spec.name)
        self._log_table(results, metrics)
        return paths

    def _log_table(self, results: dict, metrics: list[str]) -> None:
        """The runs' table as a W&B Table in the ablation's group (offline unless WANDB_MODE says
        otherwise; nothing when W&B is disabled)."""
        if os.environ.get("WANDB_MODE", "offline") == "disabled":
            return
        import wandb

        rows = [[variant, seed, *(values.get(m) for m in metrics)] for variant, seeds in results.items()
                for seed, values in sorted(seeds.items())]
        with wandb.init(project="instructrec", group=self.spec.name, job_type="ablation-table",
                        name=f"{self.spec.name}-table", dir=str(self.out), mode=os.environ.get("WANDB_MODE", "offline")) as logged:
            logged.log({"ablation": wandb.Table(columns=["variant", "seed", *metrics], data=rows)})


def _folder_name(name: str) -> str:
    """A variant's name as a folder name (``no soft targets`` -> ``no_soft_targets``)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def run_and_record(spec: RunSpec, threads: int | None = None) -> dict[str, float]:
    """One run; its test metrics, wall time, arguments and code version (:func:`code_version`)
    written to ``metrics.json`` in its folder (written last, atomically: a run without it did not
    finish)."""
    code = code_version()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    started = time.perf_counter()
    metrics = run(spec)
    tested = {k: v for k, v in metrics.items() if k.startswith("test/")}
    record = {"metrics": tested, "seconds": time.perf_counter() - started, "arguments": spec.arguments(), "code": code}
    scratch = spec.root / (METRICS_FILE + ".tmp")
    scratch.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(scratch, spec.root / METRICS_FILE)
    return tested
