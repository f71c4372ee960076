"""Rules vs learned vs auto instruction parsing on held-out data sets and marker-free instructions.

Spec: see README.md beside this file. Usage (after `instructrec train-parser --output DIR`):

    python experiments/instruction_parser/run.py --weights DIR [--per-template 40] [--marker-free 300]
    python experiments/instruction_parser/run.py --smoke    # a tiny parser trained for 2 steps, a few texts
    python experiments/instruction_parser/run.py --without-learned   # rules vs auto on a fresh install (no weights)

Writes results.csv and results.md to --out, this folder by default (and failures.md: examples of
what still fails); ``--without-learned`` writes results_without_learned.{csv,md} and
failures_without_learned.md: ``auto`` as a fresh install has it (no learned weights: the marker
rules, then the prose-option rules, then the generation fallback).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import common  # noqa: E402

# Smoke mode: records per template, marker-free instructions, rendered SST-2 texts for the rate.
SMOKE_SIZES = {"per_template": 2, "marker_free": 10, "rendered": 200}
# Unseen templates (unseen_templates/SOURCE.txt): promptsource files chosen after the parser and its
# rules were written, never read by training or while writing rules, filled with held-out records.
UNSEEN_DATASETS = ("rotten_tomatoes", "adversarial_qa", "quoref")


def rules_parser():
    """``parse_instruction(text, mode="rules")`` where the parser takes a mode, else the plain call."""
    from instructrec.instructions import parser

    if "mode" in inspect.signature(parser.parse_instruction).parameters:
        return lambda text: parser.parse_instruction(text, mode="rules")
    return parser.parse_instruction


def parse_rules(texts):
    from instructrec.instructions import InstructionError

    parse, out = rules_parser(), []
    for text in texts:
        try:
            out.append(parse(text))
        except InstructionError:
            out.append(None)
    return out


def parse_auto(texts):
    """The parser's own ``read_instruction(text, mode="auto")``: each text's reading and the method
    that made it."""
    from instructrec.instructions import parser

    out = []
    for text in texts:
        try:
            reading = parser.read_instruction(text, mode="auto")
            out.append((reading.instruction, reading.method if reading.note != parser.PROSE_NOTE else "prose rules"))
        except Exception as error:  # counted as wrong, and named in the report
            out.append((None, f"error: {type(error).__name__}"))
    return out


def markers_then_learned(texts, rules, learned):
    """``auto`` as it was before the prose rules: the rules where they find markers and parse,
    else the learned parser (to show what the prose rules add on the same weights)."""
    from instructrec.instructions.markers import find_markers

    return [ruled if ruled is not None and find_markers(text) else learned_instruction
            for text, ruled, (learned_instruction, _) in zip(texts, rules, learned)]


def pairs(instruction):
    """(field, value) pairs scored by span F1: content fields, one pair per option; not the free-text
    ``instruction`` wording."""
    if instruction is None:
        return set()
    out = set()
    for field, value in instruction.fields.items():
        if field == "instruction":
            continue
        if field == "options":
            out |= {("option", v) for v in value}
        else:
            out.add((field, value))
    return out


def field_match(predicted, gold) -> bool:
    return predicted is not None and predicted.task == gold.task and pairs(predicted) == pairs(gold)


def score(golds, predictions):
    n = len(golds)
    task = sum(p is not None and p.task == g.task for g, p in zip(golds, predictions))
    em = sum(field_match(p, g) for g, p in zip(golds, predictions))
    language = sum(p is not None and p.language == g.language for g, p in zip(golds, predictions))
    hit = predicted = gold = 0
    for g, p in zip(golds, predictions):
        gp, pp = pairs(g), pairs(p)
        hit, predicted, gold = hit + len(gp & pp), predicted + len(pp), gold + len(gp)
    precision = hit / predicted if predicted else 0.0
    recall = hit / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": n, "task_acc": task / n, "field_em": em / n, "span_f1": f1, "language_acc": language / n}


def qa_fields(golds, predictions) -> dict:
    """On the texts whose gold reading is qa: how often each of its two fields is read exactly
    (whatever task the reading has), to tell a loose question from a loose context."""
    qa = [(g, p) for g, p in zip(golds, predictions) if g.task == "qa"]
    exact = {f: sum(p is not None and p.fields.get(f) == g.fields[f] for g, p in qa) for f in ("question", "context")}
    return {"n": len(qa), **{f: count / len(qa) if qa else 0.0 for f, count in exact.items()}}


def rules_rate(texts, repeats: int = 5) -> float:
    """Rules parses per second over ``texts`` (errors included), best of ``repeats``, one thread:
    the measure of experiments/benchmarks/data_layer.py."""
    from instructrec.instructions import InstructionError

    parse, best = rules_parser(), float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for text in texts:
            try:
                parse(text)
            except InstructionError:
                pass
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def sst2_rendered(n: int = 20000) -> list[str]:
    """The data-layer benchmark's texts: SST-2 train records rendered by the sst2 template."""
    from instructrec.data import raw
    from instructrec.paths import data_root
    from instructrec.instructions import render
    from instructrec.instructions.templates import get_template

    template = get_template("sst2")
    records = raw.read_sst2(data_root() / "sst2_glue" / "glue_train_part1.tsv")[:n]
    return [render(template.apply(r, seed=0, index=i)) for i, r in enumerate(records)]


def smoke_weights(out: Path) -> Path:
    """Smoke mode's parser: ``instructrec train-parser`` on the tiny backbone for two steps."""
    from instructrec.cli import main as instructrec

    weights = out / "weights"
    instructrec(["train-parser", "--backbone", common.SMOKE_BACKBONE, "--steps", "2", "--max-length", "64", "--output", str(weights)])
    return weights


def main(argv: list[str] | None = None) -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--weights", help="a folder written by instructrec train-parser --output (not with --smoke)")
    arguments.add_argument("--per-template", type=int, default=40)
    arguments.add_argument("--marker-free", type=int, default=300)
    arguments.add_argument("--seed", type=int, default=0)
    arguments.add_argument("--threads", type=int, default=2, help="torch threads for the learned parser")
    arguments.add_argument("--without-learned", action="store_true",
                           help="no learned weights: score rules and auto as a fresh install reads (not with --weights)")
    args = common.parse(arguments, argv, HERE)
    rendered = 20000
    if args.smoke and not args.without_learned:
        args.weights = smoke_weights(args.out)
    if args.smoke:
        args.per_template, args.marker_free, rendered = SMOKE_SIZES["per_template"], SMOKE_SIZES["marker_free"], SMOKE_SIZES["rendered"]
    if args.without_learned and args.weights is not None:
        arguments.error("--without-learned takes no --weights")
    if args.weights is None and not args.without_learned:
        arguments.error("--weights is required (or --smoke, or --without-learned)")
    suffix = "_without_learned" if args.without_learned else ""

    import json

    import torch

    from instructrec.paths import data_root
    from instructrec.instructions.corpus import HELDOUT_DATASETS, build_corpus, promptsource_examples, unseen_promptsource_sets
    from instructrec.models import instruction_parser

    torch.set_num_threads(args.threads)
    # learned_parse (and auto) read $INSTRUCTREC_MODELS/instruction-parser: a scratch cache pointing
    # at --weights, or empty (--without-learned)
    import atexit
    import shutil
    import tempfile

    cache = Path(tempfile.mkdtemp(prefix="instruction-parser-run-"))
    atexit.register(shutil.rmtree, cache, ignore_errors=True)  # the link only, never the weights
    os.environ["INSTRUCTREC_MODELS"] = str(cache)
    if args.without_learned:
        meta = {}
    else:
        weights = Path(args.weights).resolve()
        (cache / instruction_parser.FOLDER).symlink_to(weights, target_is_directory=True)
        meta = json.loads((weights / "parser.json").read_text())

    examples = build_corpus("heldout", seed=args.seed, data_root=data_root(), per_template=args.per_template, paraphrases=args.marker_free)
    examples += promptsource_examples(data_root(), split="heldout", seed=args.seed, per_template=args.per_template,
                                      sets=unseen_promptsource_sets(HERE / "unseen_templates"))
    texts = [e.text for e in examples]
    golds = [e.instruction() for e in examples]

    rules = parse_rules(texts)
    started = time.perf_counter()
    learned = [(None, 0.0)] * len(texts) if args.without_learned else instruction_parser.learned_parse(texts)
    learned_seconds = time.perf_counter() - started
    auto = parse_auto(texts)

    def groups_of(example) -> tuple[str, str]:
        """The example's own set and the family whose ``: all`` row it joins."""
        if example.dataset in UNSEEN_DATASETS:
            return f"unseen templates: {example.dataset}, promptsource", "unseen templates: all"
        if example.dataset in HELDOUT_DATASETS:
            kind = "promptsource" if example.origin.startswith("promptsource/") else "our template (markers)"
            return f"held-out templates: {example.dataset}, {kind}", "held-out templates: all"
        own = "marker-free instructions" if example.dataset != "issue" else "marker-free: the issue's examples"
        return own, "marker-free: all"

    groups = defaultdict(list)
    for i, example in enumerate(examples):
        for name in groups_of(example):
            groups[name].append(i)
    methods = {"rules": rules, "learned": [p for p, _ in learned], "auto": [p for p, _ in auto]}
    if args.without_learned:
        del methods["learned"]
    else:
        methods["markers then learned"] = markers_then_learned(texts, rules, learned)
    rows = []
    order = ("held-out", "unseen", "marker-free")
    ordered = sorted(groups, key=lambda g: (next(i for i, o in enumerate(order) if g.startswith(o)), g.endswith("all"), g))
    for name in ordered:
        index = groups[name]
        for method, predictions in methods.items():
            result = score([golds[i] for i in index], [predictions[i] for i in index])
            rows.append({"set": name, "method": method, **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}})

    marked = sst2_rendered(rendered)
    rate_marked = rules_rate(marked)
    rate_all = rules_rate(texts, repeats=3)
    learned_rate = None if args.without_learned else len(texts) / learned_seconds
    auto_methods = defaultdict(int)
    for _, how in auto:
        auto_methods[how] += 1

    common.write_csv(args.out / f"results{suffix}.csv", rows, list(rows[0]))
    phases, training = [], meta.get("training", {})
    while training:
        phases.insert(0, training)
        training = training.get("continued_from") or {}

    def passages(phase: dict) -> str:  # weights trained before the option existed cut at 500
        if "max_context_chars" not in phase:
            return ""
        limit = phase["max_context_chars"]
        return ", whole passages" if limit is None else f", passages <= {limit} chars"

    described = " then ".join(
        f"{p.get('steps')} steps (seed {p.get('seed')}, max length {p.get('max_length')}{passages(p)}, {p.get('train_seconds')} s)"
        for p in phases
    )
    setup = "\n".join([
        "Learned parser: none (--without-learned: auto as a fresh install reads)." if args.without_learned else
        f"Learned parser: backbone `{meta['backbone']}`, batch {phases[-1].get('batch_size') if phases else '?'}, "
        f"{sum(p.get('steps', 0) for p in phases)} steps in all: {described}; "
        f"{sum(p.get('train_seconds', 0) for p in phases):.0f} s of training on this machine's 2 shared CPU cores.",
        f"Held-out corpus: seed {args.seed}, {args.per_template} records per template, {args.marker_free} marker-free.",
        f"auto: parser.read_instruction(mode='auto'); used {dict(auto_methods)}."
        + ("" if args.without_learned else " `markers then learned`: auto before the prose rules (markers that parse, else learned)."),
    ])
    accuracy = common.markdown_table(
        ["set", "method", "n", "task acc", "field EM", "span F1", "language acc"],
        [[row["set"], row["method"], row["n"], f"{row['task_acc']:.1%}", f"{row['field_em']:.1%}", f"{row['span_f1']:.3f}",
          f"{row['language_acc']:.1%}"] for row in rows],
    )
    qa_rows = []
    for name in (g for g in ordered if g.endswith(": all")):
        for method in ("learned", "auto"):
            if method in methods:
                found = qa_fields([golds[i] for i in groups[name]], [methods[method][i] for i in groups[name]])
                if found["n"]:
                    qa_rows.append([name, method, found["n"], f"{found['question']:.1%}", f"{found['context']:.1%}"])
    qa_table = common.markdown_table(["QA texts of the set", "method", "n", "question exact", "context exact"], qa_rows)
    throughput = common.markdown_table(["throughput", "parses/s"], [
        [f"rules, SST-2 rendered by the sst2 template ({len(marked):,} texts, best of 5; the data-layer benchmark's measure)", f"{rate_marked:,.0f}"],
        [f"rules, every held-out text ({len(texts)} texts, long SQuAD passages included, 1 thread)", f"{rate_all:,.0f}"],
        *([] if args.without_learned else [[f"learned, batched 32, {args.threads} CPU threads ({len(texts)} texts)", f"{learned_rate:,.1f}"]]),
    ])
    text = common.write_markdown(args.out / f"results{suffix}.md", setup, accuracy, qa_table, throughput)

    failures = ["# What still fails (auto), first few per set", ""]
    for name in sorted(groups):
        if name.endswith(": all"):
            continue
        shown = 0
        for i in groups[name]:
            predicted = methods["auto"][i]
            if field_match(predicted, golds[i]) or shown >= 4:
                continue
            shown += 1
            got = "None" if predicted is None else f"{predicted.task} {_short(predicted.fields)}"
            failures += [
                f"- **{name}** `{examples[i].origin}`: {_short(examples[i].text)!r}",
                f"  - expected: {golds[i].task} {_short(golds[i].fields)}",
                f"  - auto ({auto[i][1]}): {got}",
            ]
    common.write_markdown(args.out / f"failures{suffix}.md", "\n".join(failures))
    print(text, end="")


def _short(value, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr({k: (v[:60] + "…" if isinstance(v, str) and len(v) > 60 else v) for k, v in value.items()})
    return text if len(text) <= limit else text[:limit] + "…"


if __name__ == "__main__":
    main()
