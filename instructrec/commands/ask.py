"""``instructrec ask --kb FILES --ckpt CKPT "question" ...``: answers from a knowledge base, each
with the trace of the passages it came from (:mod:`instructrec.qa.ask` does the work)."""

from __future__ import annotations

import json
import sys

from instructrec.commands import command_parser


def parser():
    parser = command_parser(
        "ask", "Answer questions from a knowledge base with a QA reader checkpoint (or, with --generate, a "
        "generation model), with the trace of passages."
    )
    parser.add_argument("questions", nargs="+", help="one or more questions")
    parser.add_argument("--kb", nargs="+", required=True, help="knowledge-base files: .jsonl documents, .json SQuAD-style, .txt bAbI")
    parser.add_argument("--ckpt", required=True, help="a QAReasoningModule checkpoint (`instructrec fit` with configs/qa/*); "
                        "with --generate a GenerationModule checkpoint or a causal-LM backbone (smollm2-135m-instruct, a folder)")
    parser.add_argument("--generate", action="store_true",
                        help="write the answer with a generation model from the passages read, instead of extracting a span")
    parser.add_argument("--system-prompt", default=None,
                        help="--generate: the chat template's system turn (default: the one the checkpoint was trained with, "
                             "else the template's)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="--generate: at most this many tokens per answer")
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


def main(argv: list[str]) -> int:
    """Prints each answer and its trace; returns 2 with a message for files or a checkpoint it cannot use."""
    from instructrec.qa.ask import answer_record, build_generating_pipeline, build_pipeline

    args = parser().parse_args(argv)
    try:
        if args.generate:
            pipeline = build_generating_pipeline(
                args.kb, args.ckpt, hops=args.hops, select=args.select, passages=args.passages, max_words=args.max_words,
                max_length=args.max_length, system_prompt=args.system_prompt, max_new_tokens=args.max_new_tokens,
            )
        else:
            pipeline = build_pipeline(
                args.kb, args.ckpt, hops=args.hops, select=args.select, stories=args.stories, passages=args.passages,
                max_words=args.max_words, max_length=args.max_length, doc_stride=args.doc_stride,
            )
        answers = pipeline(args.questions)
    except (OSError, ValueError, KeyError) as error:  # files, checkpoint, window sizes
        print(f"ask: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        for answer in answers:
            print(json.dumps(answer_record(answer), ensure_ascii=False))
    else:
        print_answers(answers)
    return 0


def print_answers(answers) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for answer in answers:
        if answer.score is not None:
            how = f"span score {answer.score:.2f}"
        else:
            how = "generated" if answer.text else "no span"
        console.print(f"[bold]{answer.question}[/bold]\n  answer: {answer.text or '(none)'}  ({how}, read from {answer.passage_id})")
        table = Table(show_lines=False)
        for column in ("hop", "passage", "score", "text"):
            table.add_column(column, overflow="fold")
        for step in answer.trace:
            table.add_row(str(step.hop), step.passage_id, f"{step.score:.2f}", step.text)
        console.print(table)
