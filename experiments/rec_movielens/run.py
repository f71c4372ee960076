"""MovieLens-100K recommendation under the field's protocol (``instructrec.recommendation.protocol``):
leave-one-out by time, the true test item against 99 sampled unseen items (3 seeded candidate sets,
saved under --work_dir, never beside the results), HR@1/5/10, NDCG@5/10, MRR; full ranking
HR@10/NDCG@10. Every system is reported over all test users, and separately over the warm and the
cold ones (test item with fewer than --threshold training interactions). Systems: popularity
(counted per training interaction), item-text similarity (``ItemTextSimilarity``: the cosine
between an item's MiniLM embedding and the mean of the user's last --text_history items', no
training), with --two_tower CKPT the trained two-tower model (``configs/rec/movielens_two_tower.yaml``),
alone and with the log-popularity correction whose weight is chosen on validation (NDCG@10 of the
validation items against 99 sampled negatives; the sweep is written to val_popularity_weight.csv),
and that with a cold-item slot (``instructrec.recommendation.two_stage.ColdSlot``: the cold candidate
the two-tower alone scores highest placed at each of --cold_slot_positions); with --ranker CKPT,
the instruction ranker (``configs/rec/movielens_ranker.yaml``; its full ranking, ~1.5M
instructions, only with --ranker_full_ranking), alone (--ranker_alone: for all users, only the cold
ones, or not at all) and, with --two_tower too, as the second stage re-ordering the top
--rerank_top of the two-tower + log popularity (``instructrec.recommendation.two_stage.Reranked``;
with --rerank_blend_weights also blended with it, the weight chosen on validation). Only aggregate
figures are written here: MovieLens may not be redistributed.

    python experiments/rec_movielens/run.py            # needs: pip install --no-deps recbole==1.2.1
    python experiments/rec_movielens/run.py --ranker runs/rec/movielens_ranker/checkpoints/best.ckpt
    python experiments/rec_movielens/run.py --two_tower runs/rec/movielens_two_tower_cpu/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

HERE = Path(__file__).resolve().parent
METRICS = ["hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr"]
SUBSETS = ("all", "warm", "cold")


def main(argv=None) -> None:
    from instructrec.recommendation.baselines import Popularity
    from instructrec.recommendation.text_similarity import ItemTextSimilarity
    from instructrec.recommendation.two_stage import ColdSlot, Memoised, Reranked
    from instructrec.recommendation.movielens import read_interactions, read_movies
    from instructrec.recommendation.protocol import (
        cold_users, evaluate, full_rank_metrics, leave_one_out, sample_candidates, save_candidates,
    )

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threshold", type=int, default=5, help="cold: the test item has fewer training interactions than this")
    parser.add_argument("--ranker", default=None, help="an instruction-ranker checkpoint (configs/rec/movielens_ranker.yaml)")
    parser.add_argument("--ranker_full_ranking", action="store_true", help="also rank every unseen item with the ranker (slow)")
    parser.add_argument("--batch_size", type=int, default=256, help="the ranker's instructions per forward pass")
    parser.add_argument("--ranker_history_length", type=int, default=10,
                        help="items of history in the ranker's instructions: as in its training files (rec-data --history-length)")
    parser.add_argument("--ranker_max_length", type=int, default=256, help="the ranker's tokens per instruction, as in training")
    parser.add_argument("--ranker_alone", choices=("all", "cold", "none"), default="all",
                        help="score the ranker alone on every candidate of all users (3 x 943 x 100 instructions), of "
                             "the cold users only (3 x 12 x 100), or none (only as the second stage)")
    parser.add_argument("--rerank_top", type=int, default=20,
                        help="with --two_tower and --ranker: the two-stage system, the ranker re-ordering the top K of "
                             "the two-tower + log popularity (its ties with the K-th included), sampled and full ranking; "
                             "0: none")
    parser.add_argument("--text_history", type=int, default=10, help="items of history in item-text similarity's profile")
    parser.add_argument("--rerank_blend_weights", type=float, nargs="*", default=[],
                        help="also the two-stage system ordering its top K by first-stage score + w x the ranker's "
                             "log-odds, w chosen among these on validation (val_rerank_blend.csv); none: not run")
    parser.add_argument("--two_tower", default=None, help="a two-tower checkpoint (configs/rec/movielens_two_tower.yaml)")
    parser.add_argument("--popularity_weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0],
                        help="the two-tower's log-popularity weights tried on validation")
    parser.add_argument("--cold_slot_positions", type=int, nargs="*", default=[10],
                        help="with --two_tower: the two-tower + log popularity with the best cold candidate by the "
                             "two-tower alone placed at each of these positions (two_stage.ColdSlot); none: not run")
    args = common.parse(parser, argv, HERE, work_dir="runs/experiments/rec_movielens")
    from tqdm.auto import tqdm

    movies = read_movies()
    split = leave_one_out(read_interactions())
    systems = {"popularity": Popularity(split),
               "item-text similarity": ItemTextSimilarity(movies, split, history_length=args.text_history,
                                                          cache_dir=Path(args.work_dir) / "cache")}
    if args.two_tower:
        systems["two-tower"] = ItemTextSimilarity.from_two_tower(args.two_tower, movies, split,
                                                                 cache_dir=Path(args.work_dir) / "cache")
        # Validation (the validation items against 99 sampled negatives, training history only) chooses
        # the log-popularity weight here and the blend weight below, on one validation-stage two-tower.
        at_val = ItemTextSimilarity.from_two_tower(args.two_tower, movies, split, stage="val",
                                                   cache_dir=Path(args.work_dir) / "cache")
        val_candidates = sample_candidates(split, list(movies), stage="val", seed=0)
        weight = best_on_validation(args.out / "val_popularity_weight.csv", "popularity_weight", args.popularity_weights,
                                    at_val.reweighted, val_candidates)
        first_stage = f"two-tower + log popularity (w={weight:g}, on val)"
        systems[first_stage] = systems["two-tower"].reweighted(weight)
        for position in args.cold_slot_positions:
            systems[f"{first_stage}, cold-item slot at {position}"] = ColdSlot(
                systems[first_stage], systems["two-tower"], split, threshold=args.threshold, position=position)
    if args.ranker:
        from instructrec.recommendation.ranker import InstructionRanker

        ranker = InstructionRanker.from_checkpoint(args.ranker, movies, split, batch_size=args.batch_size,
                                                   history_length=args.ranker_history_length, max_length=args.ranker_max_length)
        if args.ranker_alone != "none":
            systems["instruction ranker"] = ranker
        if args.two_tower and args.rerank_top:
            second = Memoised(ranker)  # shared: each (user, item) read once by the ranker
            systems[f"{first_stage} -> instruction ranker (top {args.rerank_top})"] = Reranked(systems[first_stage], second, k=args.rerank_top)
            if args.rerank_blend_weights:
                ranker_at_val = InstructionRanker(ranker.model, movies, split, stage="val", history_length=ranker.history_length,
                                                  max_length=ranker.max_length, batch_size=ranker.batch_size)
                second_at_val = Memoised(lambda user, items: log_odds(ranker_at_val(user, items)))
                blend = best_on_validation(
                    args.out / "val_rerank_blend.csv", "blend", args.rerank_blend_weights,
                    lambda w: Reranked(at_val.reweighted(weight), second_at_val, k=args.rerank_top, blend=w), val_candidates)
                systems[f"{first_stage} + {blend:g} x ranker log-odds (top {args.rerank_top}, on val)"] = Reranked(
                    systems[first_stage], Memoised(lambda user, items: log_odds(second(user, items))), k=args.rerank_top, blend=blend)
    cold = cold_users(split, args.threshold)
    users = {"all": sorted(split.test), "warm": sorted(set(split.test) - cold), "cold": sorted(cold)}
    subsets_of = {name: SUBSETS for name in systems}
    if args.ranker_alone == "cold":
        subsets_of["instruction ranker"] = ("cold",)
    candidate_sets = {}
    for seed in args.seeds:
        candidate_sets[seed] = sample_candidates(split, list(movies), seed=seed)
        save_candidates(Path(args.work_dir) / f"candidates-test-seed{seed}.json", candidate_sets[seed],
                        {"seed": seed, "negatives": 99})
    rows = []
    for name, score in systems.items():
        subsets = subsets_of[name]
        scored_users = sorted({user for subset in subsets for user in users[subset]})
        for seed, candidates in candidate_sets.items():
            scores = {user: score(user, candidates[user])  # once per user: the ranker is slow
                      for user in tqdm(scored_users, desc=f"{name}, seed {seed}", unit="user", disable=None)}

            def scored(user, items):
                return scores[user]

            by_subset = {subset: evaluate(scored, {u: candidates[u] for u in users[subset]}) for subset in subsets}
            rows += [{"system": name, "subset": subset, "seed": seed, "users": len(users[subset]), **by_subset[subset]}
                     for subset in subsets]
        if name != "instruction ranker" or args.ranker_full_ranking:
            pools: dict[str, list[float]] = {}  # a user's pool is the same in every subset: scored once

            def pooled(user, items, score=score, pools=pools):
                return pools[user] if user in pools else pools.setdefault(user, score(user, items))

            for subset in subsets:
                full = full_rank_metrics(pooled, split, list(movies), users=users[subset])
                rows.append({"system": name, "subset": subset, "seed": "full ranking", "users": len(users[subset]),
                             **{f"full_{k}": v for k, v in full.items()}})
    fields = ["system", "subset", "seed", "users", *METRICS, "full_hr@10", "full_ndcg@10"]
    common.write_csv(args.out / "results.csv", rows, fields)
    table = []
    for name in systems:
        for subset in subsets_of[name]:
            mine = [r for r in rows if r["system"] == name and r["subset"] == subset]
            sampled = [r for r in mine if r["seed"] != "full ranking"]
            full = next((r for r in mine if r["seed"] == "full ranking"), None)
            table.append([name, subset, len(users[subset]),
                          *(common.mean_std([r[m] for r in sampled], digits=3) for m in METRICS),
                          *((f"{full['full_hr@10']:.3f}", f"{full['full_ndcg@10']:.3f}") if full else ("–", "–"))])
    print(common.write_markdown(args.out / "results.md", common.markdown_table(
        ["system", "subset", "users", *(f"{m} (99 neg.)" for m in METRICS), "HR@10 (full)", "NDCG@10 (full)"], table),
        f"{len(split.test)} test users, of which cold (test item with fewer than {args.threshold} training interactions) "
        f"{len(cold)}, warm the rest; 99 sampled negatives, mean ± std over candidate seeds {args.seeds}; full ranking over "
        "every item outside the user's training history (– : not run)."))


def best_on_validation(path: Path, name: str, values, scorer_for, candidates) -> float:
    """The value of ``name`` among ``values`` whose scorer (``scorer_for(value)``) has the best
    NDCG@10 on the validation ``candidates`` (seed 0); the sweep goes to ``path``."""
    from instructrec.recommendation.protocol import evaluate

    sweep = [{name: value, **evaluate(scorer_for(value), candidates)} for value in values]
    common.write_csv(path, sweep, [name, *METRICS])
    best = max(sweep, key=lambda row: row["ndcg@10"])
    print("validation sweep: " + ", ".join(f"{name}={r[name]:g} NDCG@10 {r['ndcg@10']:.3f}" for r in sweep)
          + f" -> {name}={best[name]:g}")
    return best[name]


def log_odds(probabilities, floor: float = 1e-6) -> list[float]:
    """The ranker's P(yes) as log-odds (clipped away from 0 and 1), the scale a blend with the
    first stage's logit-like scores adds."""
    import math

    clipped = [min(max(p, floor), 1 - floor) for p in probabilities]
    return [math.log(p) - math.log1p(-p) for p in clipped]


if __name__ == "__main__":
    main()
