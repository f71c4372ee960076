"""``instructrec recommend --ckpt CKPT "instruction"``: a listwise next-item instruction (the user's
history as its text, the candidates as options) -> its candidates ranked by the checkpoint: a
next-item ranker's P(yes) (:class:`instructrec.recommendation.ranker.InstructionRanker`), or a
two-tower model's cosine of history and candidate
(:func:`instructrec.recommendation.two_tower.rank_instruction`)."""

from __future__ import annotations

import json

from instructrec.commands import command_parser


def parser():
    parser = command_parser(
        "recommend", "Rank the options of a listwise instruction (history as 'Text:', candidates as 'Options:', one per "
        "line) with a next-item ranker (configs/rec/movielens_ranker.yaml) or two-tower checkpoint "
        "(configs/rec/movielens_two_tower.yaml), loaded with weights_only=True.",
    )
    parser.add_argument("instructions", nargs="+", help="one or more ranking instructions")
    parser.add_argument("--ckpt", required=True,
                        help="a MultiTaskModule checkpoint with a next-item (yes/no) task, or a TwoTowerModule's")
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens per pointwise instruction (ranker, default 256) or per history text (two-tower, "
                             "default 192), as in training")
    parser.add_argument("--json", action="store_true", help="one JSON object per instruction: {ranking: [{option, score}]}")
    return parser


def main(argv: list[str]) -> int:
    import torch

    from instructrec.models.checkpoints import load_module
    from instructrec.recommendation.ranker import InstructionRanker
    from instructrec.recommendation.two_tower import TwoTowerModule, rank_instruction

    args = parser().parse_args(argv)
    model = load_module(args.ckpt).to("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(model, TwoTowerModule):
        length = args.max_length or 192
        rank = lambda text: rank_instruction(model, text, max_query_length=length)  # noqa: E731
    else:
        rank = InstructionRanker(model, max_length=args.max_length or 256).rank
    for text in args.instructions:
        ranked = rank(text)
        if args.json:
            print(json.dumps({"ranking": [{"option": o, "score": s} for o, s in ranked]}, ensure_ascii=False))
        else:
            print("\n".join(f"{place:>3}. {score:.4f}  {option}" for place, (option, score) in enumerate(ranked, start=1)))
    return 0
