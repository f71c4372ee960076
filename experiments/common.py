"""What the experiment scripts share, so that each ``run.py`` holds only its question:

* offline defaults, set on import before anything reads them (no hub, no dataset downloads, no W&B);
* the arguments every script takes (:func:`parse`): ``--out`` for its results, ``--work_dir`` for its
  runs, and ``--smoke``: the whole pipeline on the tiny random backbone (``tiny-bert``), a handful
  of examples and one short epoch, written into a temporary folder (the numbers mean nothing; the
  committed results are never touched). ``tests/test_experiments.py`` runs every script so;
* a shipped config rewritten for one run's output folder (:func:`run_config`), run through
  LightningCLI in this process, as ``instructrec fit/predict`` runs it (:func:`lightning`);
* every configuration over seeds, results saved after each run (:func:`over_seeds`), and the
  metrics a run logged (:func:`logged`);
* mean ± std over seeds (:func:`mean_std`), a Markdown table (:func:`markdown_table`), and the
  results written as CSV (:func:`write_csv`) and Markdown (:func:`write_markdown`).

Scripts import it with ``sys.path.insert(0, <experiments folder>)``; it is not part of the package.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

from instructrec.studies.tables import markdown_table, mean_std  # noqa: E402,F401  (the scripts' tables)

ROOT = Path(__file__).resolve().parents[1]
# Smoke mode: at most this many examples per split (one or two batches each), one epoch.
SMOKE_BACKBONE = "tiny-bert"
SMOKE_EXAMPLES = {"train": 32, "val": 16, "test": 16, "predict": 16}
SMOKE_OVERRIDES = [f"--model.init_args.backbone={SMOKE_BACKBONE}", "--trainer.max_epochs=1"]


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None, here: Path, work_dir: str | None = None):
    """``argv`` parsed by ``parser`` plus the options every experiment takes: ``--out`` (default:
    ``here``), ``--work_dir`` (where ``work_dir`` is given: the script's runs, checkpoints and data
    cache) and ``--smoke``. With ``--smoke``, those left unset are a fresh temporary folder."""
    parser.add_argument("--out", default=None, help=f"folder for the results (default: {here}; with --smoke a temporary folder)")
    if work_dir is not None:
        parser.add_argument("--work_dir", default=None,
                            help=f"runs, checkpoints and the data cache (default: {work_dir}; with --smoke under --out)")
    parser.add_argument("--smoke", action="store_true",
                        help="check the whole pipeline on the tiny random backbone with a handful of examples (results are meaningless)")
    args = parser.parse_args(argv)
    if args.smoke and args.out is None:
        args.out = tempfile.mkdtemp(prefix=f"{here.name}-smoke-")
    args.out = Path(args.out or here)
    args.out.mkdir(parents=True, exist_ok=True)
    if work_dir is not None:
        # Absolute: the configs' relative checkpoint and prediction folders would otherwise be read
        # under the trainer's default_root_dir, nesting the work dir inside itself.
        args.work_dir = Path(args.work_dir or (args.out / "runs" if args.smoke else work_dir)).resolve()
    return args


def run_config(config: Path, out: Path, *, timer: bool = False) -> Path:
    """``config`` with its checkpoints and prediction files under ``out``, no progress bar, and
    (``timer``) Lightning's ``Timer`` callback; written to ``out/config.yaml``."""
    import yaml

    data = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    callbacks = []
    for callback in data["trainer"].get("callbacks") or []:
        name = callback["class_path"].rsplit(".", 1)[-1]
        if name == "ModelCheckpoint":
            callback["init_args"]["dirpath"] = str(out / "checkpoints")
        elif name in ("QAPredictionWriter", "JsonlPredictionWriter"):
            callback["init_args"]["output_dir"] = str(out / "predictions")
        elif name == "RichProgressBar":
            continue
        callbacks.append(callback)
    if timer:
        # Timer's `interval` defaults to an enum that the saved config cannot hold: give the string.
        callbacks.append({"class_path": "lightning.pytorch.callbacks.Timer", "init_args": {"interval": "step"}})
    data["trainer"]["callbacks"] = callbacks
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def lightning(command: str, config: Path | str, out: Path, *overrides: str, cache_dir: Path | None = None,
              smoke: bool = False):
    """``instructrec COMMAND --config CONFIG OVERRIDES`` in this process (LightningCLI, as the
    command line runs it) with no logger or progress bar, its files under ``out`` and the data cache
    in ``cache_dir`` (shared by an experiment's runs: each data set is encoded once); ``smoke``:
    :data:`SMOKE_OVERRIDES` last, so they win. Returns ``(cli, seconds)``."""
    from instructrec.cli import run_lightning

    argv = [
        command, "--config", str(config), *overrides,
        "--trainer.logger=false", "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={out}",
        *([f"--data.init_args.cache_dir={cache_dir}"] if cache_dir is not None else []),
        *(SMOKE_OVERRIDES if smoke else []),
    ]
    started = time.perf_counter()
    cli = run_lightning(argv)
    return cli, time.perf_counter() - started


# Retrieval experiments in smoke mode: the first paragraphs of each split (more than the largest k).
SMOKE_PARAGRAPHS = 30


def parse_retrieval(parser: argparse.ArgumentParser, argv: Sequence[str] | None, here: Path):
    """:func:`parse` plus the options of a retrieval experiment: ``(args, cache_dir, paragraphs,
    backbone)``; ``--cache-dir`` holds dense embeddings, smoke mode reads :data:`SMOKE_PARAGRAPHS`
    paragraphs per split with the tiny encoder (else every paragraph, MiniLM-L6)."""
    parser.add_argument("--cache-dir", default=None, help="dense embeddings (default: .cache/retrieval; with --smoke under --out)")
    args = parse(parser, argv, here)
    cache_dir = args.cache_dir or str(args.out / "cache" if args.smoke else ".cache/retrieval")
    paragraphs, backbone = (SMOKE_PARAGRAPHS, SMOKE_BACKBONE) if args.smoke else (None, "minilm-l6")
    return args, cache_dir, paragraphs, backbone


def retrieval_split(path: Path, paragraphs: int | None = None):
    """(knowledge base, questions, gold passage position per question) of a SQuAD-style file (of
    its first ``paragraphs`` paragraphs and their questions, where given)."""
    from instructrec.data.raw import read_squad
    from instructrec.retrieval import KnowledgeBase

    import numpy as np

    kb = KnowledgeBase.from_squad(path)
    if paragraphs is not None:
        kb = KnowledgeBase(list(kb)[:paragraphs])
    gold_of = {qid: i for i, p in enumerate(kb) for qid in p.meta["questions"]}
    records = [r for r in read_squad(path) if r["id"] in gold_of]
    return kb, [r["question"] for r in records], np.array([gold_of[r["id"]] for r in records])


def smoke_examples(splits: Iterable[str] = SMOKE_EXAMPLES) -> str:
    """``--data.init_args.max_examples`` of smoke mode (an InstructionDataModule's), as YAML."""
    return json.dumps({split: SMOKE_EXAMPLES[split] for split in splits})


def logged(cli, prefix: str = "") -> dict[str, float]:
    """The metrics the run logged last (``callback_metrics``) whose names start with ``prefix``."""
    return {name: float(value) for name, value in cli.trainer.callback_metrics.items() if name.startswith(prefix)}


def over_seeds(seeds: Iterable[int], configurations: Iterable[str], run_one: Callable[[str, int], list[dict]],
               save: Callable[[list[dict]], None]) -> list[dict]:
    """Every configuration with every seed, seed-major (a stopped experiment still has every
    configuration's first seeds); after each run, ``save`` gets all rows so far, so partial results
    survive."""
    configurations = list(configurations)
    rows: list[dict] = []
    for seed in seeds:
        for configuration in configurations:
            rows += run_one(configuration, seed)
            save(rows)
            print(f"[experiment] done: {configuration} seed {seed}", flush=True)
    return rows


def write_markdown(path: Path, *blocks: str) -> str:
    """``blocks`` (tables, paragraphs) written to ``path``, a blank line between them; the text."""
    text = "\n\n".join(blocks) + "\n"
    Path(path).write_text(text, encoding="utf-8")
    return text


def write_csv(path: Path, rows: Iterable[dict], fields: Sequence[str]) -> None:
    """``rows`` as CSV with the columns ``fields``, header first (rewritten whole each time)."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict]:
    """The rows of a results CSV written before (none when there is no file)."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
