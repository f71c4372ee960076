"""QA post-processing benchmark: the vectorised n-best decoder vs the loops, side by side in one run.

    python experiments/benchmarks/qa_postprocess.py [--examples 300] [--backbone auto] [--version-2]

Features: the first ``--examples`` questions of SQuAD v1.1 dev part 1 from ``$INSTRUCTREC_DATA``
(else a synthetic long context), tokenised into 384-token doc-stride windows (stride 128) by the
backbone's tokenizer; logits are seeded Gaussian noise, the hardest case for a decoder (no peak
to find quickly). n-best 20, max answer length 30. Three decoders:

1. ``postprocess_qa_predictions`` (vectorised, ``instructrec.qa.postprocess``);
2. the exhaustive double loop over start x end tokens (``tests/qa_reference.py``, the reference
   the tests compare against): the predictions must be identical, which this script asserts;
3. the common top-k loop (pairs only the 20 best start and end tokens; not identical: it can miss
   spans), for scale.

Goal: vectorised >= 5x the exhaustive loop. Prints a Markdown table; every time is the best of 3.
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

from qa_reference import reference_postprocess, topk_loop_postprocess  # noqa: E402

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


def best_of(repeats: int, fn):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


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
    options = dict(n_best=20, max_answer_length=30, version_2=args.version_2)

    fast_s, fast = best_of(args.repeats, lambda: postprocess_qa_predictions(start, end, offsets, index, contexts, **options))
    loop_s, loop = best_of(args.repeats, lambda: reference_postprocess(start, end, offsets, index, contexts, **options))
    topk_s, topk = best_of(args.repeats, lambda: topk_loop_postprocess(start, end, offsets, index, contexts))

    identical = all(
        a.text == b.text and [(c.text, c.score) for c in a.nbest] == [(c.text, c.score) for c in b.nbest]
        for a, b in zip(fast, loop)
    )
    agree_topk = sum(a.best is not None and a.best.text == t for a, t in zip(fast, topk)) / len(fast)
    n = len(offsets)
    print(f"{source}; backbone {backbones.canonical(args.backbone)}; {n} features of 384 tokens; best of {args.repeats}\n")
    print("| decoder | seconds | features/s | speed-up of vectorised |")
    print("|---|---:|---:|---:|")
    print(f"| vectorised (`postprocess_qa_predictions`) | {fast_s:.3f} | {n / fast_s:,.0f} | 1.0x |")
    print(f"| exhaustive double loop (reference) | {loop_s:.3f} | {n / loop_s:,.0f} | {loop_s / fast_s:.1f}x |")
    print(f"| top-20 x top-20 loop (common practice) | {topk_s:.3f} | {n / topk_s:,.0f} | {topk_s / fast_s:.1f}x |")
    print(f"\nidentical to the reference (text, score, n-best): {identical}")
    print(f"top-k loop's best text agrees with the exact best: {agree_topk:.1%}")
    if not identical:
        raise SystemExit("vectorised predictions differ from the reference loop")


if __name__ == "__main__":
    main()
