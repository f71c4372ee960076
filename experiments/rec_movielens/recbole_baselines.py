"""RecBole's BPR and SASRec on MovieLens-100K, scored on OUR saved candidate lists.

RecBole (1.2.1) trains; we score. RecBole's own uni99/full evaluations are not comparable with our
protocol (its negatives may include seen items; its full ranking of sequential models does not
mask seen items), so every model is scored here, by calling it on exactly the items of the saved
test candidate lists (``candidates-test-seed{0,1,2}.json`` from ``run.py --work_dir``) and on every
item outside the user's training history, with ``instructrec.recommendation.protocol``'s metrics
(ties at their expected value).

Same split as ours, exactly: RecBole's leave-one-out (``split LS valid_and_test, order TO,
group_by user``) sorts by timestamp, and for 415 of 943 users the validation and test items share
one. So this script writes a RecBole atomic dataset (under ``--work_dir``/data, never in the
repository: MovieLens may not be redistributed) whose timestamp is each interaction's rank in
OUR order (sorted by (timestamp, file line)), and asserts before training that RecBole's
train/valid/test items (and SASRec's input sequences) equal ours for every user.

Runs in a separate virtual environment (RecBole needs numpy<2, pandas<3, setuptools<80), never in
the package's; see RECBOLE.md for the setup. Only aggregate figures are written here.

    nice -n 10 /work/recbole/venv/bin/python experiments/rec_movielens/recbole_baselines.py --models BPR
    nice -n 10 /work/recbole/venv/bin/python experiments/rec_movielens/recbole_baselines.py --models SASRec

Rows of models not run this time are kept from the existing recbole_results.csv.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))  # instructrec.recommendation.{movielens,protocol}: stdlib only
sys.path.insert(0, str(HERE.parent))  # experiments/common.py: tables and CSV
import common  # noqa: E402

METRICS = ["hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr"]
FIELDS = ["model", "subset", "seed", "users", *METRICS, "full_hr@10", "full_ndcg@10",
          "train_s", "epochs", "best_epoch", "stopped", "recbole_valid_ndcg@10"]
DATASET = "ml-100k-ours"
COLD = 5  # a test item with fewer training interactions than this is cold


class CapReached(Exception):
    """Raised from Trainer.fit's per-epoch callback to stop at the wall-clock cap."""


class _UntilDeadline:
    """A training DataLoader that yields no batch once ``deadline`` (perf_counter) has passed."""

    def __init__(self, loader, deadline: float) -> None:
        self.loader, self.deadline, self.batches = loader, deadline, 0

    def __iter__(self):
        for batch in self.loader:
            if time.perf_counter() >= self.deadline:
                return
            self.batches += 1
            yield batch

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)


def capped_trainer(config, model, seconds: float | None):
    """RecBole's ``Trainer`` with a wall-clock cap on ``fit``: an epoch running into the cap stops
    after the batch in progress (a partial epoch), RecBole validates it as usual (and keeps it if
    it is the best so far), and then the per-epoch callback (:meth:`epoch_done`, passed as
    ``fit(callback_fn=...)``) raises :class:`CapReached`. Training time is so at most the cap plus
    one batch and one validation (about a second here); ``epochs_done`` counts the partial epoch
    as a fraction."""
    from recbole.trainer import Trainer

    class CappedTrainer(Trainer):
        def fit(self, *args, **kwargs):
            self.started = time.perf_counter()
            self.deadline = None if seconds is None else self.started + seconds
            self.epochs_done = 0.0
            return super().fit(*args, **kwargs)

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            if self.deadline is None:
                self.epochs_done += 1
                return super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
            if time.perf_counter() >= self.deadline:  # no batch left for this epoch
                raise CapReached
            limited = _UntilDeadline(train_data, self.deadline)
            loss = super()._train_epoch(limited, epoch_idx, loss_func, show_progress)
            self.epochs_done += limited.batches / len(train_data)
            return loss

        def _save_checkpoint(self, epoch, verbose=True, **kwargs):
            """The best epoch's weights, kept in memory: nothing is pickled to disk and read back."""
            self.best = {"epoch": epoch, "best_valid_score": float(self.best_valid_score),
                         "state_dict": copy.deepcopy(self.model.state_dict()),
                         "other_parameter": copy.deepcopy(self.model.other_parameter())}

        def epoch_done(self, epoch_idx: int, valid_score: float) -> None:
            now = time.perf_counter()
            print(f"[recbole] epoch {epoch_idx} ({self.epochs_done:.2f} epochs): valid NDCG@10 {valid_score:.4f}, "
                  f"{now - self.started:.0f}s", flush=True)
            if self.deadline is not None and now >= self.deadline:
                raise CapReached

    return CappedTrainer(config, model)


def write_atomic(folder: Path, interactions) -> Path:
    """``DATASET.inter`` with the timestamp replaced by the interaction's rank in our order:
    sorted by (timestamp, file line), globally (so per user too)."""
    ranked = sorted(interactions, key=lambda e: (e.timestamp, e.line))
    rank = {e.line: r for r, e in enumerate(ranked)}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{DATASET}.inter"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for e in interactions:
            handle.write(f"{e.user}\t{e.item}\t{e.rating:g}\t{rank[e.line]}\n")
    return path


def config_for(model: str, work: Path, epochs: int | None):
    from recbole.config import Config

    config = {
        "data_path": str(work / "data"),
        "checkpoint_dir": str(work / "saved"),
        "seed": 2020,
        "reproducibility": True,
        "use_gpu": False,
        "show_progress": False,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "valid_metric": "NDCG@10",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},  # default: user and item only
    }
    if model == "SASRec":
        config.update({"train_batch_size": 256, "loss_type": "CE", "train_neg_sample_args": None})
    if epochs is not None:
        config["epochs"] = epochs
    return Config(model=model, dataset=DATASET, config_dict=config)


def _tokens(dataset, field, values):
    return [str(t) for t in dataset.field2id_token[field][values]]


def verify_split(split, train_data, valid_data, test_data, sequential: bool, max_len: int) -> None:
    """RecBole's split equals ours: the valid and test item of every user; for BPR the training
    history in order, for SASRec the training targets in order and the input sequences of the
    validation and test rows (the last ``max_len`` items before the target)."""
    for name, loader, ours in (("valid", valid_data, split.valid), ("test", test_data, split.test)):
        ds = loader.dataset
        users = _tokens(ds, ds.uid_field, ds.inter_feat[ds.uid_field].numpy())
        items = _tokens(ds, ds.iid_field, ds.inter_feat[ds.iid_field].numpy())
        assert len(users) == len(set(users)) == len(ours), f"{name}: {len(users)} rows for {len(ours)} users"
        theirs = dict(zip(users, items))
        assert theirs == ours, f"{name}: {sum(theirs.get(u) != i for u, i in ours.items())} users differ"
        if sequential:
            lists = ds.inter_feat[ds.item_id_list_field].numpy()
            lengths = ds.inter_feat[ds.item_list_length_field].numpy()
            for user, row, length in zip(users, lists, lengths):
                history = split.train[user] + ([split.valid[user]] if name == "test" else [])
                assert _tokens(ds, ds.iid_field, row[:length]) == history[-max_len:], f"{name}: input of user {user}"
    ds = train_data.dataset
    feat = ds.inter_feat
    users = _tokens(ds, ds.uid_field, feat[ds.uid_field].numpy())
    items = _tokens(ds, ds.iid_field, feat[ds.iid_field].numpy())
    times = feat[ds.time_field].numpy()
    history: dict[str, list[tuple[float, str]]] = {}
    for user, item, t in zip(users, items, times):
        history.setdefault(user, []).append((t, item))
    theirs = {u: [i for _, i in sorted(v)] for u, v in history.items()}
    ours = {u: (h[1:] if sequential else h) for u, h in split.train.items()}  # SASRec: targets from the 2nd item on
    assert theirs == ours, f"train: {sum(theirs.get(u) != h for u, h in ours.items())} users differ"


def score_matrix(model, test_data, sequential: bool):
    """Scores of every (test user, item): ``(scores, row of user token, column of item token)``."""
    import torch
    from recbole.data.interaction import Interaction

    ds = test_data.dataset
    feat = ds.inter_feat
    uids = feat[ds.uid_field]
    inputs = feat if sequential else Interaction({ds.uid_field: uids})
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(inputs).view(len(uids), -1).numpy()
    rows = {u: r for r, u in enumerate(_tokens(ds, ds.uid_field, uids.numpy()))}
    columns = {str(t): c for c, t in enumerate(ds.field2id_token[ds.iid_field]) if c > 0}  # 0: [PAD]
    return scores, rows, columns


def train(model_name: str, work: Path, split, minutes: float | None, epochs: int | None):
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import BPR
    from recbole.model.sequential_recommender import SASRec
    from recbole.utils import init_logger, init_seed

    config = config_for(model_name, work, epochs)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    sequential = model_name == "SASRec"
    verify_split(split, train_data, valid_data, test_data, sequential, config["MAX_ITEM_LIST_LENGTH"])
    print(f"[recbole] {model_name}: RecBole's train/valid/test equal ours for all {len(split.test)} users", flush=True)

    init_seed(config["seed"], config["reproducibility"])
    model = {"BPR": BPR, "SASRec": SASRec}[model_name](config, train_data.dataset).to(config["device"])
    trainer = capped_trainer(config, model, minutes * 60 if minutes else None)
    stopped = "early stopping"
    started = time.perf_counter()
    try:
        trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=trainer.epoch_done)
        if trainer.epochs_done >= config["epochs"]:
            stopped = "max epochs"
    except CapReached:
        stopped = f"{minutes:g}-minute cap"
    seconds = time.perf_counter() - started
    checkpoint = trainer.best  # the best validation epoch (kept in memory, see capped_trainer)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    info = {"train_s": round(seconds, 1), "epochs": round(trainer.epochs_done, 2), "best_epoch": checkpoint["epoch"], "stopped": stopped,
            "recbole_valid_ndcg@10": round(float(checkpoint["best_valid_score"]), 4)}
    print(f"[recbole] {model_name}: {info}", flush=True)
    return score_matrix(model, test_data, sequential), info


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["BPR", "SASRec"], choices=["BPR", "SASRec"])
    parser.add_argument("--work_dir", type=Path, default=Path("/work/recbole"),
                        help="the atomic dataset (data/), checkpoints (saved/), RecBole's logs (runs/)")
    parser.add_argument("--candidates", type=Path, default=None,
                        help="folder of candidates-test-seed*.json (default: WORK_DIR/candidates)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="candidate seeds")
    parser.add_argument("--sasrec-minutes", type=float, default=15.0, help="wall-clock cap on SASRec's fit")
    parser.add_argument("--bpr-minutes", type=float, default=None, help="wall-clock cap on BPR's fit (default: none)")
    parser.add_argument("--epochs", type=int, default=None, help="override RecBole's epochs (300), for a quick check")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    work = args.work_dir.resolve()
    candidates_dir = (args.candidates or work / "candidates").resolve()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    from instructrec.recommendation.movielens import read_interactions, read_movies
    from instructrec.recommendation.protocol import (
        cold_users, evaluate, full_rank_metrics, leave_one_out, load_candidates, sample_candidates,
    )

    interactions = read_interactions()
    catalogue = list(read_movies())
    split = leave_one_out(interactions)
    candidates = {}
    for seed in args.seeds:
        lists, _ = load_candidates(candidates_dir / f"candidates-test-seed{seed}.json")
        assert lists == sample_candidates(split, catalogue, seed=seed), f"candidates seed {seed} are not ours"
        candidates[seed] = lists
    subsets = {"all": set(split.test), "cold": cold_users(split, COLD)}
    subsets["warm"] = subsets["all"] - subsets["cold"]
    write_atomic(work / "data" / DATASET, interactions)
    (work / "runs").mkdir(parents=True, exist_ok=True)
    os.chdir(work / "runs")  # RecBole logs into ./log and ./log_tensorboard

    csv_path = args.out / "recbole_results.csv"
    rows = [r for r in common.read_csv(csv_path) if r["model"] not in args.models]
    for name in args.models:
        minutes = args.sasrec_minutes if name == "SASRec" else args.bpr_minutes
        (scores, row_of, column_of), info = train(name, work, split, minutes, args.epochs)
        missing = set(catalogue) - set(column_of)
        assert not missing, f"{len(missing)} items unknown to RecBole"

        def score(user, items, scores=scores, row_of=row_of, column_of=column_of):
            line = scores[row_of[user]]
            return [float(line[column_of[i]]) for i in items]

        for subset, users in subsets.items():
            for seed, lists in candidates.items():
                metrics = evaluate(score, {u: c for u, c in lists.items() if u in users})
                rows.append({"model": name, "subset": subset, "seed": seed, "users": len(users), **metrics, **info})
            full = full_rank_metrics(score, split, catalogue, users=users)
            rows.append({"model": name, "subset": subset, "seed": "full ranking", "users": len(users),
                         **{f"full_{k}": v for k, v in full.items()}, **info})
        common.write_csv(csv_path, rows, FIELDS)
    write_table(rows, args.out / "recbole_results.md", args.seeds)


def write_table(rows, path: Path, seeds) -> None:
    table = []
    for name in ("BPR", "SASRec"):
        for subset in ("all", "warm", "cold"):
            sampled = [r for r in rows if r["model"] == name and r["subset"] == subset and str(r["seed"]) != "full ranking"]
            full = [r for r in rows if r["model"] == name and r["subset"] == subset and str(r["seed"]) == "full ranking"]
            if not sampled or not full:
                continue
            f = full[0]
            table.append([name, subset, f["users"], *(common.mean_std([r[m] for r in sampled], digits=3) for m in METRICS),
                          f"{float(f['full_hr@10']):.3f}", f"{float(f['full_ndcg@10']):.3f}",
                          f"{float(f['train_s']):.0f}", f"{f['epochs']} (best {f['best_epoch']}; {f['stopped']})"])
    print(common.write_markdown(path, common.markdown_table(
        ["model", "subset", "users", *(f"{m} (99 neg.)" for m in METRICS), "HR@10 (full)", "NDCG@10 (full)",
         "train s", "epochs"], table),
        f"RecBole 1.2.1 (seed 2020, CPU), trained on our leave-one-out split (asserted equal) and scored on our saved "
        f"test candidate lists: 99 sampled negatives, mean ± std over candidate seeds {list(seeds)}; full ranking over "
        f"every item outside the user's training history. Cold: test item with fewer than {COLD} interactions in the "
        "training split. Checkpoint: the epoch with the best validation NDCG@10 (RecBole's full-ranking validation); "
        "train s: RecBole's fit, validation included. See RECBOLE.md."))


if __name__ == "__main__":
    main()
