"""Recall of the gold paragraph on SQuAD v1.1 dev part 2: BM25, dense MiniLM, and their fusion.

    python experiments/retrieval_squad/run.py [--cache-dir .cache/retrieval] [--out experiments/retrieval_squad]

Knowledge base: the 1,078 paragraphs of part 2 (articles 24-48); queries: its 5,169 questions; a
question's gold passage is the paragraph it was asked about. Everything chosen (BM25 k1/b, the
fusion's normalisation and weights) is tuned on part 1 (articles 1-23, 989 paragraphs, 5,401
questions: no article shared) and then measured once on part 2. Four signals are fused:

- ``bm25``: BM25 over whole paragraphs; ``bm25-chunks``: BM25 over chunks, a paragraph scored by its best;
- ``dense``: MiniLM over whole paragraphs; ``dense-chunks``: MiniLM over chunks (max-sim).

Chunks are whole sentences up to 40 words. Dense embeddings (paragraphs, chunks, questions) are
cached under ``--cache-dir`` by content; the first run encodes ~25k texts (15-25 min on 2 busy
cores), later runs take a minute. Writes ``results.csv`` and ``results.md`` to ``--out``.
``--smoke`` runs the same on the first paragraphs of each part with the tiny random encoder.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402  (offline defaults, before instructrec is imported)

import numpy as np  # noqa: E402

from instructrec.paths import data_root  # noqa: E402
from instructrec.retrieval import KnowledgeBase, recall_at  # noqa: E402
from instructrec.retrieval.bm25 import BM25Retriever  # noqa: E402
from instructrec.retrieval.chunked import ChunkedRetriever  # noqa: E402
from instructrec.retrieval.dense import DenseRetriever  # noqa: E402
from instructrec.retrieval.hybrid import HybridRetriever, fuse  # noqa: E402

HERE = Path(__file__).resolve().parent
KS = (1, 5, 20)
CHUNK_WORDS = 40
BM25_GRID = [(k1, b) for k1 in (0.9, 1.2, 1.5) for b in (0.75, 0.9)]
WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)  # per signal, relative to paragraph BM25 at 1.0
SIGNALS = ("bm25", "dense", "dense-chunks", "bm25-chunks")
FIELDS = ["method", "fusion", *(f"recall@{k}" for k in KS)]


def split(part: int, paragraphs: int | None = None):
    """(knowledge base, questions, gold passage position per question) of one part."""
    return common.retrieval_split(data_root() / "squad_v1.1_dev" / f"dev-v1.1.part{part}.json", paragraphs)


def retrievers(kb: KnowledgeBase, cache_dir: str, k1: float, b: float, backbone: str = "minilm-l6") -> dict:
    dense = partial(DenseRetriever, backbone=backbone, cache_dir=cache_dir, cache_queries=True)
    bm25 = partial(BM25Retriever, k1=k1, b=b)
    return {
        "bm25": bm25(kb),
        "dense": dense(kb),
        "dense-chunks": ChunkedRetriever(kb, dense, max_words=CHUNK_WORDS),
        "bm25-chunks": ChunkedRetriever(kb, bm25, max_words=CHUNK_WORDS),
    }


def tune_bm25(kb, questions, gold) -> tuple[float, float]:
    return max(BM25_GRID, key=lambda p: recall_at(BM25Retriever(kb, k1=p[0], b=p[1]).score_matrix(questions), gold, (1,))[1])


def tune_weights(scores: dict, gold) -> tuple[float, ...]:
    """The weights of SIGNALS (BM25 fixed at 1) with the best R@1, then R@5, under z-score fusion."""
    best = None
    for rest in itertools.product(WEIGHT_GRID, repeat=len(SIGNALS) - 1):
        weights = (1.0, *rest)
        recall = recall_at(fuse([scores[s] for s in SIGNALS], weights, "zscore"), gold, (1, 5))
        if best is None or (recall[1], recall[5]) > best[0]:
            best = ((recall[1], recall[5]), weights)
    return best[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args, cache_dir, paragraphs, backbone = common.parse_retrieval(parser, argv, HERE)
    started = time.perf_counter()

    kb1, questions1, gold1 = split(1, paragraphs)
    k1, b = tune_bm25(kb1, questions1, gold1)
    tuning = {name: r.score_matrix(questions1) for name, r in retrievers(kb1, cache_dir, k1, b, backbone).items()}
    weights = tune_weights(tuning, gold1)
    (two_r1, how, w) = max(
        (recall_at(fuse([tuning["bm25"], tuning["dense"]], [1 - w, w], how), gold1, (1,))[1], how, w)
        for how in ("zscore", "minmax")
        for w in np.linspace(0.0, 1.0, 21)
    )
    print(f"tuned on part 1: BM25 k1={k1} b={b}; 2-signal {how} w={w:.2f}; 4-signal weights {weights}", file=sys.stderr)

    kb, questions, gold = split(2, paragraphs)
    built = retrievers(kb, cache_dir, k1, b, backbone)
    scores = {name: r.score_matrix(questions) for name, r in built.items()}
    default_bm25 = BM25Retriever(kb).score_matrix(questions)
    hybrid = HybridRetriever([built[s] for s in SIGNALS], weights, normalisation="zscore")
    final = hybrid.score_matrix(questions)  # the packaged retriever; equals fuse() on the same scores
    assert np.allclose(final, fuse([scores[s] for s in SIGNALS], weights, "zscore"))

    rows = [
        ("BM25 (bm25s defaults k1=1.5 b=0.75, stemmed, stop words dropped)", "-", default_bm25),
        (f"BM25, k1={k1} b={b} (tuned on part 1)", "-", scores["bm25"]),
        (f"BM25 over {CHUNK_WORDS}-word chunks, best chunk", "-", scores["bm25-chunks"]),
        ("dense MiniLM-L6 over paragraphs (mean-pooled, cosine)", "-", scores["dense"]),
        (f"dense MiniLM-L6 over {CHUNK_WORDS}-word chunks, best chunk", "-", scores["dense-chunks"]),
        ("hybrid BM25 + dense, plain sum of min-max scores", "minmax, 1:1", fuse([default_bm25, scores["dense"]], [0.5, 0.5], "minmax")),
        ("hybrid BM25 + dense, reciprocal rank fusion (k=60)", "rrf, 1:1", fuse([default_bm25, scores["dense"]], [0.5, 0.5], "rrf")),
        ("hybrid BM25 + dense, tuned on part 1", f"{how}, {1 - w:.2f}:{w:.2f}", fuse([scores["bm25"], scores["dense"]], [1 - w, w], how)),
        ("**hybrid of all four, tuned on part 1**", "zscore, " + ":".join(f"{x:g}" for x in weights), final),
    ]
    results = [(name, fusion, recall_at(matrix, gold, KS)) for name, fusion, matrix in rows]
    common.write_csv(args.out / "results.csv", [
        dict(zip(FIELDS, [name.strip("*"), fusion, *(f"{recall[k]:.4f}" for k in KS)])) for name, fusion, recall in results
    ], FIELDS)
    text = common.write_markdown(
        args.out / "results.md",
        f"SQuAD v1.1 dev part 2: {len(kb)} paragraphs, {len(gold)} questions; every choice tuned on part 1 "
        f"(weights in the order {', '.join(SIGNALS)}). {time.perf_counter() - started:.0f} s.",
        common.markdown_table(["method", "fusion", "R@1", "R@5", "R@20"],
                              [[name, fusion, *(f"{r[k]:.3f}" for k in KS)] for name, fusion, r in results],
                              align=["---", "---", "---:", "---:", "---:"]),
    )
    print(text, end="")


if __name__ == "__main__":
    main()
