"""``instructrec recommend --ckpt CKPT "instruction"``: a listwise next-item instruction (the user's
history as its text, the candidates as options) -> its candidates ranked by the checkpoint's P(yes)
(:class:`instructrec.recommendation.ranker.InstructionRanker`)."""

from __future__ import annotations

import json

from instructrec.commands import command_parser


def parser():
    parser = command_parser(
        "recommend", "Rank the options of a listwise instruction (history as 'Text:', candidates as 'Options:', one per "
        "line) with a next-item checkpoint (configs/rec/movielens_ranker.yaml), loaded with weights_only=True.",
    )
    parser.add_argument("instructions", nargs="+", help="one or more ranking instructions")
    parser.add_argument("--ckpt", required=True, help="a MultiTaskModule checkpoint with a next-item (yes/no) task")
    parser.add_argument("--max-length", type=int, default=256, help="tokens per pointwise instruction, as in training")
    parser.add_argument("--json", action="store_true", help="one JSON object per instruction: {ranking: [{option, score}]}")
    return parser


def main(argv: list[str]) -> int:
    from instructrec.recommendation.ranker import InstructionRanker

    args = parser().parse_args(argv)
    ranker = InstructionRanker.from_checkpoint(args.ckpt, max_length=args.max_length)
    for text in args.instructions:
        ranked = ranker.rank(text)
        if args.json:
            print(json.dumps({"ranking": [{"option": o, "score": s} for o, s in ranked]}, ensure_ascii=False))
        else:
            print("\n".join(f"{place:>3}. {score:.4f}  {option}" for place, (option, score) in enumerate(ranked, start=1)))
    return 0
