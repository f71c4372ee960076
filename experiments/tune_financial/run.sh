#!/usr/bin/env bash
# The Financial PhraseBank tune of issue 15 at the committed CPU budget (budget.yaml: 300 training
# sentences; remove the --overlay lines for the full-data study).
# 1. Two studies side by side, one CPU thread each (each has a core of its own and the machine's
#    noise falls on both): with pruning (Optuna's median pruner after each epoch) and without.
#    Both use the random sampler with seed 0, so they propose the same 20 trials and differ in
#    pruning alone; their wall times are in each trials.csv (`seconds`).
#    The pruned study ends first. So that the unpruned one's last trials do not run alone on the
#    machine (on 2026-12-01 they then ran twice as fast, and the saving read 25.7% where the trials
#    both studies ran under the same load saved 39%), the pruned study is repeated as ballast
#    (fpb_median_ballast) until the unpruned one ends; its trials' times say only how far the load
#    moved over the run (report.py summary --ballast).
# 2. Shipped vs tuned (the pruned study's best values), 3 seeds each, scored on the held-out test
#    split the search never saw: `instructrec ablate compare.yaml` (written from the study).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUDGET=experiments/tune_financial/budget.yaml
tune() {  # tune PRUNER STUDY_NAME
  OMP_NUM_THREADS=1 instructrec tune --config configs/financial_phrasebank.yaml --overlay "$BUDGET" \
    --space experiments/tune_financial/space.yaml --n-trials 20 --sampler random --seed 0 --pruner "$1" \
    --study-name "$2" --out "runs/tune/$2" --test false --no-progress > "runs/tune/$2.log" 2>&1
}
mkdir -p runs/tune
tune median fpb_median &
pruned=$!
tune none fpb_none &
unpruned=$!
wait "$pruned"     # set -e: a failed study stops the script here
tune median fpb_median_ballast &
ballast=$!
wait "$unpruned"
pkill -P "$ballast" || true   # the study's process (the function runs in a subshell)
wait "$ballast" || true
python experiments/tune_financial/report.py compare-spec runs/tune/fpb_median --overlay "$BUDGET" > experiments/tune_financial/compare.yaml
instructrec ablate experiments/tune_financial/compare.yaml --no-progress
python experiments/tune_financial/report.py summary runs/tune/fpb_median runs/tune/fpb_none runs/ablate/tune_financial \
  --ballast runs/tune/fpb_median_ballast
