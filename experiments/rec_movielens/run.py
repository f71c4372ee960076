"""MovieLens-100K recommendation under the field's protocol (``instructrec.recommendation.protocol``):
leave-one-out by time, the true test item against 99 sampled unseen items (3 seeded candidate sets,
saved under --work_dir, never beside the results), HR@1/5/10, NDCG@5/10, MRR; full ranking
HR@10/NDCG@10. Systems so far: popularity (counted per training interaction). Only aggregate
figures are written here: MovieLens may not be redistributed.

    python experiments/rec_movielens/run.py            # needs: pip install --no-deps recbole==1.2.1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

HERE = Path(__file__).resolve().parent
METRICS = ["hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr"]


def main(argv=None) -> None:
    from instructrec.recommendation.baselines import Popularity
    from instructrec.recommendation.movielens import read_interactions, read_movies
    from instructrec.recommendation.protocol import evaluate, full_rank_metrics, leave_one_out, sample_candidates, save_candidates

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = common.parse(parser, argv, HERE, work_dir="runs/experiments/rec_movielens")
    movies = read_movies()
    split = leave_one_out(read_interactions())
    systems = {"popularity": Popularity(split)}
    rows = []
    for name, score in systems.items():
        for seed in args.seeds:
            candidates = sample_candidates(split, list(movies), seed=seed)
            save_candidates(Path(args.work_dir) / f"candidates-test-seed{seed}.json", candidates, {"seed": seed, "negatives": 99})
            rows.append({"system": name, "seed": seed, **evaluate(score, candidates)})
        full = full_rank_metrics(score, split, list(movies))
        rows.append({"system": name, "seed": "full ranking", **{f"full_{k}": v for k, v in full.items()}})
    fields = ["system", "seed", *METRICS, "full_hr@10", "full_ndcg@10"]
    common.write_csv(args.out / "results.csv", rows, fields)
    table = []
    for name in systems:
        sampled = [r for r in rows if r["system"] == name and r["seed"] != "full ranking"]
        full = next(r for r in rows if r["system"] == name and r["seed"] == "full ranking")
        table.append([name, *(common.mean_std([r[m] for r in sampled], digits=3) for m in METRICS),
                      f"{full['full_hr@10']:.3f}", f"{full['full_ndcg@10']:.3f}"])
    print(common.write_markdown(args.out / "results.md", common.markdown_table(
        ["system", *(f"{m} (99 neg.)" for m in METRICS), "HR@10 (full)", "NDCG@10 (full)"], table),
        f"943 test users; 99 sampled negatives, mean ± std over candidate seeds {args.seeds}; full ranking over every "
        "item outside the user's training history."))


if __name__ == "__main__":
    main()
