"""QA post-processing benchmark: the vectorised n-best decoder vs the loops, side by side in one run.

    python experiments/benchmarks/qa_postprocess.py [--examples 300] [--backbone auto] [--version-2]

Features: the first ``--examples`` questions of SQuAD v1.1 dev part 1 from ``$INSTRUCTREC_DATA``
(else a synthetic long context), tokenised into 384-token doc-stride windows (stride 128) by the
backbone's tokenizer; logits are seeded Gaussian noise, the hardest case for a decoder (no peak
to find quickly). Max answer length 30. Decoders, each pair with the same output:

1. ``postprocess_qa_predictions`` (vectorised, ``instructrec.qa.postprocess``), n-best 20 (distinct
   texts with probabilities), against the exhaustive double loop over start x end tokens
   (``tests/qa_reference.py``, the reference the tests compare against: the predictions must be
   identical, which this script asserts) and against the top-20 x top-20 loop that builds its
   n-best list as Hugging Face's ``run_qa`` does (not exact: it can miss spans);
2. ``postprocess_qa_predictions`` with ``n_best=1`` (the best answer only; asserted equal to the
   n-best run's best) against the bare top-20 x top-20 loop that keeps the best text only.

Goals: vectorised >= 5x the exhaustive loop, and at least as fast as the top-k loop with the same
output. Every time is the best of ``--repeats`` rounds; in each round the decoders run one after
the other (a noisy machine slows them alike). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401  (offline defaults, set before instructrec is imported)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))  # the reference loops live with the tests

from qa_reference import reference_postprocess, topk_loop_postprocess, topk_nbest_postprocess  # noqa: E402

from instructrec import backbones  # noqa: E402
from instructrec.paths import data_root  # noqa: E402
from instructrec.data.qa_features import prepare_qa_features  # noqa: E402
from instructrec.data.raw import read_squad  # noqa: E402
from instructrec.qa.postprocess import postprocess_qa_predictions  # noqa: E402


def load_examples(n: int) -> tuple[list[str], list[str], str]:
    path = data_root() / "squad_v1.1_dev" / "dev-v1.1.part1.json"
    if path.is_file():
        records = read_squad(path)[:n]
        return [r["question"] for r in records], [r["context"] for r in records], f"SQuAD v1.1 dev part 1 ({n} questions)"
    context = " ".join(f"word{i} is followed by another clause, and so on." for i in range(120))
    return ["What follows?"] * n, [context] * n, f"synthetic long context ({n} copies)"


def best_of_rounds(repeats: int, decoders: dict) -> tuple[dict[str, float], dict]:
    """Each decoder's best time over ``repeats`` rounds (one call of every decoder per round) and its result."""
    times, results = {name: [] for name in decoders}, {}
    for _ in range(repeats):
        for name, fn in decoders.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}, results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--backbone", default="auto")
    parser.add_argument("--version-2", action="store_true", help="also compute null scores (SQuAD 2.0)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    questions, contexts, source = load_examples(args.examples)
    tokenizer = backbones.load_tokenizer(args.backbone)
    features = prepare_qa_features(tokenizer, questions, contexts, [None] * len(contexts), [None] * len(contexts), max_length=384, doc_stride=128, pad_to_max_length=True)
    offsets, index = features["offset_mapping"], features["example_index"]
    rng = np.random.default_rng(0)
    start = rng.normal(size=(len(offsets), 384)).astype(np.float32)
    end = rng.normal(size=(len(offsets), 384)).astype(np.float32)
    options = dict(max_answer_length=30, version_2=args.version_2)

    decoders = {
        "vectorised": lambda: postprocess_qa_predictions(start, end, offsets, index, contexts, n_best=20, **options),
        "top-k n-best": lambda: topk_nbest_postprocess(start, end, offsets, index, contexts, n_best=20),
        "vectorised best": lambda: postprocess_qa_predictions(start, end, offsets, index, contexts, n_best=1, **options),
        "top-k best": lambda: topk_loop_postprocess(start, end, offsets, index, contexts),
    }
    seconds, results = best_of_rounds(args.repeats, decoders)
    loop_seconds, found = best_of_rounds(1, {"reference": lambda: reference_postprocess(
        start, end, offsets, index, contexts, n_best=20, **options)})
    seconds.update(loop_seconds)
    fast, loop = results["vectorised"], found["reference"]

    identical = all(
        a.text == b.text and [(c.text, c.score) for c in a.nbest] == [(c.text, c.score) for c in b.nbest]
        for a, b in zip(fast, loop)
    )
    best_only_equal = all((a.best is None and b.best is None) or (a.best.text, a.best.score) == (b.best.text, b.best.score)
                          for a, b in zip(results["vectorised best"], fast))
    agree_topk = sum(a.best is not None and a.best.text == t for a, t in zip(fast, results["top-k best"])) / len(fast)
    n = len(offsets)
    rows = [
        ("vectorised (`postprocess_qa_predictions`)", "n-best 20", "vectorised", "vectorised"),
        ("exhaustive double loop (reference)", "n-best 20", "reference", "vectorised"),
        ("top-20 x top-20 loop, n-best list as `run_qa` builds it", "n-best 20", "top-k n-best", "vectorised"),
        ("vectorised, `n_best=1`", "best answer", "vectorised best", "vectorised best"),
        ("top-20 x top-20 loop (common practice)", "best answer", "top-k best", "vectorised best"),
    ]
    print(f"{source}; backbone {backbones.canonical(args.backbone)}; {n} features of 384 tokens; "
          f"best of {args.repeats} rounds (the reference: one run)\n")
    print("| decoder | output | seconds | features/s | its time / vectorised's (same output) |")
    print("|---|---|---:|---:|---:|")
    for label, output, name, against in rows:
        print(f"| {label} | {output} | {seconds[name]:.4f} | {n / seconds[name]:,.0f} | {seconds[name] / seconds[against]:.2f}x |")
    print(f"\nidentical to the reference (text, score, n-best): {identical}")
    print(f"n_best=1 gives the n-best run's best span: {best_only_equal}")
    print(f"top-k loop's best text agrees with the exact best: {agree_topk:.1%}")
    if not identical or not best_only_equal:
        raise SystemExit("vectorised predictions differ from the reference loop")

if __name__ == "__main__":
    main()
