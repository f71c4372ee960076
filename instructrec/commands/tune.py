"""``instructrec tune --config BASE.yaml --space SPACE.yaml --n-trials N``: an Optuna study over
config keys, each trial a ``fit`` run (:mod:`instructrec.studies.tuning` does the work)."""

from __future__ import annotations

from instructrec.commands import command_parser


def parser():
    parser = command_parser(
        "tune",
        "Search config values with Optuna: every trial is an `instructrec fit` of BASE with the trial's values, "
        "pruned on the config's checkpoint monitor; the best config is written as best.yaml and tested after the search.",
        options_flag="--options",
    )
    parser.add_argument("--config", required=True, help="the base config (fit's YAML)")
    parser.add_argument("--overlay", action="append", default=[], help="a config merged onto the base in every trial (repeatable)")
    parser.add_argument("--space", required=True, help="the search space YAML: {dotted.key: {type: float|int|categorical, ...}}")
    parser.add_argument("--n-trials", type=int, required=True, help="trials (completed or pruned) in the study, over all processes")
    parser.add_argument("--out", default=None, help="trials' runs and the study's files (default runs/tune/<study-name>)")
    parser.add_argument("--storage", default=None,
                        help="an Optuna RDB URL shared by every process of the study (default sqlite:///<out>/study.db; "
                             "PostgreSQL/MySQL URLs across machines)")
    parser.add_argument("--study-name", default=None, help="the study's name in the storage (default: the base config's file name)")
    parser.add_argument("--sampler", default="tpe", choices=["tpe", "random", "grid"])
    parser.add_argument("--pruner", default="median", choices=["median", "hyperband", "none"])
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    parser.add_argument("--test", type=bool, default=True, help="score the best trial's checkpoint on the test split after the search")
    parser.add_argument("--heartbeat-interval", type=int, default=60,
                        help="seconds between a trial's heartbeats; a trial silent twice as long (its process died) is retried")
    parser.add_argument("--no-progress", action="store_true", help="no live progress view")
    return parser


def main(argv: list[str]) -> int:
    from pathlib import Path

    from instructrec.studies.tuning import Tuner

    args = parser().parse_args(argv)
    name = args.study_name or Path(args.config).stem
    tuner = Tuner(args.config, args.space, args.n_trials, args.out or f"runs/tune/{name}", storage=args.storage,
                  study_name=name, sampler=args.sampler, pruner=args.pruner, seed=args.seed, test=args.test,
                  heartbeat_interval=args.heartbeat_interval, overlays=args.overlay)
    tuner.optimize(progress=not args.no_progress)
    best = tuner.study.best_trial
    print(f"best trial {best.number}: {tuner.monitor} = {best.value:.6g} with {best.params}")
    config = tuner.best_config()
    print(f"best config: {config}  (instructrec fit --config it)")
    print(f"trials: {tuner.write_trials()}")
    if args.test:
        metrics = tuner.test_best(config)
        print("test of the best trial: " + ", ".join(f"{k} = {v:.4f}" for k, v in sorted(metrics.items())))
    return 0
