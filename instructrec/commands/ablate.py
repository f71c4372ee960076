"""``instructrec ablate SPEC.yaml``: variants x seeds of a base config, run (or resumed) and
reported as a paper's table (:mod:`instructrec.studies.ablation` does the work)."""

from __future__ import annotations

from instructrec.commands import command_parser


def parser():
    parser = command_parser(
        "ablate",
        "Run an ablation spec (a base config, named variants, seeds): every run a fit with test_after_fit; runs that "
        "finished before are skipped; writes results.csv, results.md, results.tex and results.png.",
    )
    parser.add_argument("spec", help="the ablation spec YAML (see instructrec.studies.ablation)")
    parser.add_argument("--out", default=None, help="output folder (default: the spec's `out`, else runs/ablate/<name>)")
    parser.add_argument("--processes", type=int, default=None, help="runs at once (default: the spec's, else 1)")
    parser.add_argument("--report-only", action="store_true", help="write the table from the finished runs; run nothing")
    parser.add_argument("--no-progress", action="store_true", help="no live progress view")
    return parser


def main(argv: list[str]) -> int:
    import shlex

    from instructrec.studies.ablation import Ablation, AblationSpec

    args = parser().parse_args(argv)
    spec = AblationSpec.read(args.spec)
    if args.processes is not None:
        spec.processes = args.processes
    ablation = Ablation(spec, args.out)
    results = ablation.collect() if args.report_only else ablation.run(progress=not args.no_progress)
    # The table's command is the one that makes it from nothing: a --report-only rerun of the
    # same spec would only rewrite it, so the flag is left out.
    command = "instructrec ablate " + shlex.join([a for a in argv if a != "--report-only"])
    paths = ablation.report(results, command=command)
    print(paths["md"].read_text(encoding="utf-8"))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0
