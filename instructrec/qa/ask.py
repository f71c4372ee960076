"""``instructrec ask --kb FILES --ckpt CKPT "question" ...``: answers from a knowledge base, each
with the trace of the passages it came from.

The knowledge base is built from the files (by extension: ``.jsonl`` documents, ``.json``
SQuAD-style paragraphs, ``.txt`` bAbI stories), searched by BM25 over ``--hops`` rounds of
:class:`~instructrec.retrieval.MultiHopRetriever`, and the selected passages are read by the
checkpoint's reader (:class:`~instructrec.models.QAReasoningModule`, loaded with
``weights_only=True``). Plain ``argv -> exit status``; nothing here imports the CLI.
"""

from __future__ import annotations

import argparse
import json
import sys

from instructrec.paths import resolve_path
from instructrec.errors import MissingFileError
from instructrec.retrieval.knowledge_base import KnowledgeBase

READER_CLASS = "instructrec.models.QAReasoningModule"


def ask_parser(prog: str = "instructrec ask") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0].replace("``", ""))
    parser.add_argument("questions", nargs="+", help="one or more questions")
    parser.add_argument("--kb", nargs="+", required=True, help="knowledge-base files: .jsonl documents, .json SQuAD-style, .txt bAbI")
    parser.add_argument("--ckpt", required=True, help="a QAReasoningModule checkpoint (`instructrec fit` with configs/qa/*)")
    parser.add_argument("--hops", type=int, default=2, help="retrieval rounds; each later one adds the selected passages to the query")
    parser.add_argument("--select", type=int, nargs="+", default=[1],
                        help="passages selected (and traced) per hop: one number for every hop, or one per hop (sets --hops)")
    parser.add_argument("--stories", action="store_true",
                        help="the knowledge base is a story told in order (bAbI): the latest matching fact wins, later hops "
                             "follow the names found, and the reader reads the selected facts as one text in story order "
                             "(what readers trained with reader_args {retrieve: [...]} read); e.g. --select 1 10")
    parser.add_argument("--passages", type=int, default=3, help="passages the reader reads: the selected ones, then the best others")
    parser.add_argument("--max-words", type=int, default=100, help="words per passage when .jsonl documents are split")
    parser.add_argument("--max-length", type=int, default=384, help="reader window in tokens")
    parser.add_argument("--doc-stride", type=int, default=128, help="tokens shared by consecutive reader windows")
    parser.add_argument("--json", action="store_true", help="print one JSON object per question instead of a table")
    return parser


def load_knowledge_base(paths: list[str], *, max_words: int = 100) -> KnowledgeBase:
    """One knowledge base from several files, each read by its extension."""
    bases = []
    for name in paths:
        path = resolve_path(name)
        if not path.is_file():
            raise MissingFileError(f"knowledge-base file {path} does not exist")
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            bases.append(KnowledgeBase.from_jsonl(path, max_words=max_words))
        elif suffix == ".json":
            bases.append(KnowledgeBase.from_squad(path))
        elif suffix == ".txt":
            bases.append(KnowledgeBase.from_babi(path))
        else:
            raise ValueError(f"{path}: unknown knowledge-base format {suffix!r}; expected .jsonl, .json (SQuAD) or .txt (bAbI)")
    kb = bases[0]
    for other in bases[1:]:
        kb = kb + other
    return kb


def build_pipeline(args: argparse.Namespace):
    from instructrec import backbones
    from instructrec.models.checkpoints import load_module
    from instructrec.qa.pipeline import RetrieveAndRead
    from instructrec.retrieval.bm25 import BM25Retriever
    from instructrec.retrieval.multihop import MultiHopRetriever
    from instructrec.retrieval.stories import latest_fact_retriever

    kb = load_knowledge_base(args.kb, max_words=args.max_words)
    reader = load_module(args.ckpt, default_class=READER_CLASS).eval()
    if not hasattr(reader, "head") or not hasattr(reader.hparams, "max_answer_length"):
        raise ValueError(f"{args.ckpt} is not an extractive QA reader checkpoint ({type(reader).__name__})")
    select = args.select if len(args.select) > 1 else args.select * args.hops  # passages per hop
    if args.stories:
        retriever = latest_fact_retriever(kb, select)
    else:
        retriever = MultiHopRetriever(BM25Retriever(kb), select=select, k=args.passages)
    return RetrieveAndRead(
        retriever,
        reader,
        backbones.load_tokenizer(reader.hparams.backbone),
        passages=args.passages,
        max_length=args.max_length,
        doc_stride=args.doc_stride,
        n_best=reader.hparams.n_best,
        max_answer_length=reader.hparams.max_answer_length,
        chain=args.stories,
    )


def answer_record(answer) -> dict:
    return {
        "question": answer.question,
        "answer": answer.text,
        "score": answer.score,
        "passage_id": answer.passage_id,
        "trace": [step.as_dict() for step in answer.trace],
    }


def print_answers(answers) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for answer in answers:
        score = "-" if answer.score is None else f"{answer.score:.2f}"
        console.print(f"[bold]{answer.question}[/bold]\n  answer: {answer.text or '(none)'}  (span score {score}, read from {answer.passage_id})")
        table = Table(show_lines=False)
        for column in ("hop", "passage", "score", "text"):
            table.add_column(column, overflow="fold")
        for step in answer.trace:
            table.add_row(str(step.hop), step.passage_id, f"{step.score:.2f}", step.text)
        console.print(table)


def ask_main(argv: list[str]) -> int:
    """Prints each answer and its trace; returns 2 with a message for files or a checkpoint it cannot use."""
    args = ask_parser().parse_args(argv)
    try:
        answers = build_pipeline(args)(args.questions)
    except (OSError, ValueError, KeyError) as error:  # files, checkpoint, window sizes
        print(f"ask: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        for answer in answers:
            print(json.dumps(answer_record(answer), ensure_ascii=False))
    else:
        print_answers(answers)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(ask_main(sys.argv[1:]))
