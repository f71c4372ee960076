"""Recall of the gold paragraph on CMRC2018 (Chinese): BM25 analysers and a dense MiniLM.

    python experiments/retrieval_cmrc/run.py [--cache-dir .cache/retrieval] [--out experiments/retrieval_cmrc]

Knowledge base: the 848 paragraphs of CMRC2018 dev; queries: its 3,219 questions; a question's
gold passage is the paragraph it was asked about. The analyser of ``BM25Retriever(language=
"chinese")`` was chosen on the trial split (256 paragraphs, 1,002 questions, no article shared) by
R@1 among the rows below; dev is measured once. Rows:

- bm25s's own tokenisation (``\\w\\w+`` runs: a Chinese clause is one "word"), no segmenter;
- single characters; character bigrams (the classic CJK analysers, e.g. Lucene's CJKAnalyzer);
- jieba words, precise mode; jieba words, search mode (long words also give their shorter words);
- jieba search-mode words plus the Han runs' bigrams: the library's analyser;
- dense all-MiniLM-L6-v2 (mean-pooled, cosine; texts cut at 256 tokens): its vocabulary is
  English (244 Han characters), so most Chinese characters read as ``[UNK]``.

Also written: what MiniLM's tokenizer makes of CMRC (``tokenizer.md``): the share of ``[UNK]``
tokens in contexts, questions and answers, the Han characters its vocabulary covers, and the answers
with at least one ``[UNK]`` (a reader can still point at them through the offsets, but cannot tell
one unknown character from another). Writes ``results.csv``, ``results.md`` and ``tokenizer.md``
to ``--out``. ``--smoke``: the first 30 paragraphs of each split, the tiny random encoder.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402  (offline defaults, before instructrec is imported)

import jieba  # noqa: E402

from instructrec import backbones  # noqa: E402
from instructrec.instructions.markers import HAN_CHARACTERS  # noqa: E402
from instructrec.paths import data_root  # noqa: E402
from instructrec.retrieval import recall_at  # noqa: E402
from instructrec.retrieval.bm25 import BM25Retriever  # noqa: E402
from instructrec.retrieval.dense import DenseRetriever  # noqa: E402

HERE = Path(__file__).resolve().parent
jieba.setLogLevel(logging.WARNING)
KS = (1, 5, 20)
FIELDS = ["method", *(f"trial_recall@{k}" for k in KS), *(f"recall@{k}" for k in KS)]


ANALYSERS = {  # row name -> BM25Retriever keyword arguments
    "BM25, bm25s's tokenisation (no segmenter)": dict(language=None, stopwords=None),
    "BM25 over characters": dict(analyzer=list),
    "BM25 over character bigrams": dict(analyzer=lambda text: [text[i : i + 2] for i in range(len(text) - 1)]),
    "BM25 over jieba words (precise mode)": dict(analyzer=jieba.lcut),
    "BM25 over jieba words (search mode)": dict(analyzer=jieba.lcut_for_search),
    "BM25 over jieba search words + Han bigrams (`language=\"chinese\"`)": dict(language="chinese"),
}


def split(name: str, paragraphs: int | None):
    return common.retrieval_split(data_root() / "cmrc2018" / f"cmrc2018_{name}.json", paragraphs)


def tokenizer_report(tokenizer, path: Path, paragraphs: int | None) -> list[list[str]]:
    """Rows of ``[text, tokens, [UNK] share, texts with an [UNK]]`` for contexts, questions, answers."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    chosen = [p for article in data for p in article["paragraphs"]][:paragraphs]
    texts = {
        "contexts": [p["context"] for p in chosen],
        "questions": [qa["question"] for p in chosen for qa in p["qas"]],
        "answers (first reference)": [qa["answers"][0]["text"] for p in chosen for qa in p["qas"] if qa["answers"]],
    }
    rows = []
    for name, values in texts.items():
        ids = tokenizer(values, add_special_tokens=False, verbose=False)["input_ids"]
        tokens = sum(map(len, ids))
        unknown = [sum(i == tokenizer.unk_token_id for i in row) for row in ids]
        rows.append([name, f"{len(values):,}", f"{tokens:,}", f"{sum(unknown) / max(tokens, 1):.1%}",
                     f"{sum(u > 0 for u in unknown) / max(len(values), 1):.1%}"])
    han = [c for text in texts["contexts"] for c in HAN_CHARACTERS.findall(text)]
    vocabulary = tokenizer.get_vocab()
    known = sum(c in vocabulary for c in han)
    distinct = set(han)
    rows.append(["Han characters in contexts", f"{len(han):,} ({len(distinct):,} distinct)", "-",
                 f"{1 - known / max(len(han), 1):.1%} not in the vocabulary",
                 f"{sum(c not in vocabulary for c in distinct) / max(len(distinct), 1):.1%} of the distinct ones"])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args, cache_dir, paragraphs, backbone = common.parse_retrieval(parser, argv, HERE)
    started = time.perf_counter()

    splits = {name: split(name, paragraphs) for name in ("trial", "dev")}
    recalls = {}
    for method, options in ANALYSERS.items():
        recalls[method] = {name: recall_at(BM25Retriever(kb, **options).score_matrix(questions), gold, KS)
                           for name, (kb, questions, gold) in splits.items()}
    dense = f"dense {backbones.canonical(backbone)} over paragraphs (mean-pooled, cosine; English vocabulary)"
    recalls[dense] = {
        name: recall_at(DenseRetriever(kb, backbone=backbone, cache_dir=cache_dir, cache_queries=True).score_matrix(questions), gold, KS)
        for name, (kb, questions, gold) in splits.items()
    }
    chosen = max(ANALYSERS, key=lambda method: (recalls[method]["trial"][1], recalls[method]["trial"][5]))
    print(f"best on trial by R@1: {chosen}", file=sys.stderr)

    common.write_csv(args.out / "results.csv", [
        dict(zip(FIELDS, [method, *(f"{r['trial'][k]:.4f}" for k in KS), *(f"{r['dev'][k]:.4f}" for k in KS)]))
        for method, r in recalls.items()
    ], FIELDS)
    (kb, questions, _), (trial_kb, trial_questions, _) = splits["dev"], splits["trial"]
    text = common.write_markdown(
        args.out / "results.md",
        f"CMRC2018 dev: {len(kb)} paragraphs, {len(questions)} questions (trial: {len(trial_kb)} paragraphs, "
        f"{len(trial_questions)} questions; the analyser is chosen there by R@1: {chosen}). "
        f"{time.perf_counter() - started:.0f} s.",
        common.markdown_table(
            ["method", "trial R@1", "R@1", "R@5", "R@20"],
            [[f"**{method}**" if method == chosen else method, f"{r['trial'][1]:.3f}", *(f"{r['dev'][k]:.3f}" for k in KS)]
             for method, r in recalls.items()],
            align=["---", "---:", "---:", "---:", "---:"],
        ),
    )
    tokenizer = backbones.load_tokenizer(backbone)
    common.write_markdown(
        args.out / "tokenizer.md",
        f"{backbones.canonical(backbone)}'s tokenizer on CMRC2018 dev ({tokenizer.vocab_size:,} tokens in its vocabulary).",
        common.markdown_table(["text", "count", "tokens", "[UNK] share", "with an [UNK]"],
                              tokenizer_report(tokenizer, data_root() / "cmrc2018" / "cmrc2018_dev.json", paragraphs),
                              align=["---", "---:", "---:", "---:", "---:"]),
    )
    print(text, end="")


if __name__ == "__main__":
    main()
