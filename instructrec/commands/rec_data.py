"""``instructrec rec-data --out DIR``: MovieLens-100K as next-item yes/no instruction files for
``configs/rec/movielens_ranker.yaml`` (:mod:`instructrec.recommendation.instructions` does the work)."""

from __future__ import annotations

from instructrec.commands import command_parser


def parser():
    parser = command_parser(
        "rec-data", "Write MovieLens-100K (read from the recbole wheel) as train/val next-item instructions (JSONL) "
        "without leakage: training pairs from the training history only, the validation item only in val.jsonl, "
        "the test item nowhere. The files stay in --out: MovieLens may not be redistributed.",
    )
    parser.add_argument("--out", default="runs/rec/movielens",
                        help="folder for train.jsonl, val.jsonl, meta.json (git-ignored or outside the repository)")
    parser.add_argument("--history-length", type=int, default=10, help="items of history per instruction (the last ones)")
    parser.add_argument("--positions-per-user", type=int, default=20,
                        help="positives per user: the last positions of the training history")
    parser.add_argument("--negatives-per-positive", type=int, default=3,
                        help="unseen items drawn per positive (and per validation item)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the negatives and the question's phrasing")
    parser.add_argument("--language", default="en", choices=["en", "zh"],
                        help="wording of the instructions (zh: options 是, 否; a head of its own)")
    return parser


def main(argv: list[str]) -> int:
    from pathlib import Path

    from instructrec.recommendation.instructions import sample_pairs, write_instruction_files
    from instructrec.recommendation.movielens import read_interactions, read_movies
    from instructrec.recommendation.protocol import leave_one_out

    args = parser().parse_args(argv)
    settings = {"history_length": args.history_length, "positions_per_user": args.positions_per_user,
                "negatives_per_positive": args.negatives_per_positive, "seed": args.seed}
    movies = read_movies()
    pairs = sample_pairs(leave_one_out(read_interactions()), list(movies), **settings)
    written = write_instruction_files(args.out, pairs, movies, language=args.language, seed=args.seed,
                                      meta={"data": "MovieLens-100K (recbole 1.2.1 wheel)", **settings})
    for stage, path in written.items():
        print(f"{stage}: {len(pairs[stage])} instructions -> {path}")
    # the config reads runs/rec/movielens: files written elsewhere are named on the command line
    print("next: instructrec fit --config configs/rec/movielens_ranker.yaml"
          + (f" --data.init_args.sources '{{next_item: {{train: {written['train']}, val: {written['val']}}}}}'"
             if Path(args.out) != Path("runs/rec/movielens") else ""))
    return 0
