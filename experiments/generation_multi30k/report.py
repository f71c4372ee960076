"""The Multi30k en->de tables from a run of run.sh: the learning curve (validation BLEU/chrF
over training pairs seen, the zero-shot model at 0), the test2016 row, sample outputs, and the
batched-generation benchmark's line. Every score is recomputed with sacreBLEU from the generation
files the runs wrote (each line: id, prompt, prediction, references), so the table can be checked
against them.

    python experiments/generation_multi30k/report.py [--run runs/generation/multi30k_en_de] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

HERE = Path(__file__).resolve().parent
FIELDS = ["split", "step", "pairs_seen", "sentences", "bleu", "chrf"]


def scores(path: Path) -> dict:
    import sacrebleu

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    hypotheses = [r["prediction"] for r in rows]
    references = [r["references"][0] for r in rows]
    return {"sentences": len(rows), "bleu": round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2),
            "chrf": round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 2), "rows": rows}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/generation/multi30k_en_de")
    parser.add_argument("--batch-size", type=int, default=8, help="training batch size (pairs seen = step x this)")
    parser.add_argument("--out", default=str(HERE))
    args = parser.parse_args(argv)
    run, out = Path(args.run), Path(args.out)
    found = [(0, run / "zero_shot" / "generations" / "val-step0-translation_en_de.jsonl")]
    for path in (run / "generations").glob("val-step*-translation_en_de.jsonl"):
        found.append((int(re.search(r"step(\d+)", path.name).group(1)), path))
    table = []
    for step, path in sorted(found):
        if path.is_file():
            table.append({"split": "val (first 100 by id hash)", "step": step, "pairs_seen": step * args.batch_size,
                          **{k: v for k, v in scores(path).items() if k != "rows"}})
    test = run / "generations" / "test-translation_en_de.jsonl"
    samples = []
    if test.is_file():
        scored = scores(test)
        step = max((r["step"] for r in table), default=0)
        table.append({"split": "test2016 (all)", "step": f"best of {step}", "pairs_seen": "", **{k: v for k, v in scored.items() if k != "rows"}})
        samples = scored["rows"][:5]
    common.write_csv(out / "results.csv", table, FIELDS)
    blocks = [common.markdown_table(["split", "step", "training pairs seen", "sentences", "BLEU", "chrF"],
                                    [[r["split"], r["step"], r["pairs_seen"], r["sentences"], r["bleu"], r["chrf"]] for r in table])]
    if samples:
        blocks.append(common.markdown_table(["source", "generated", "reference"],
                                            [[s["prompt"].split(": ", 1)[1], s["prediction"], s["references"][0]] for s in samples]))
    distilled = HERE / "distillation_report.json"  # copied from the distillation run's folder
    if distilled.is_file():
        d = json.loads(distilled.read_text(encoding="utf-8"))
        blocks.append("Distillation (configs/distill/generation_multi30k_half.yaml, 120 steps = 960 pairs, word-level KD; "
                      "test on 200 test2016 sentences chosen by a seeded id hash, both models on the same batches of 8):\n\n"
                      + common.markdown_table(
                          ["model", "layers", "parameters", "BLEU", "chrF", "new tokens/s"],
                          [["teacher", d["teacher_layers"], f"{d['teacher_params']:,}", f"{d['teacher/translation_en_de/bleu']:.2f}",
                            f"{d['teacher/translation_en_de/chrf']:.2f}", f"{d['teacher_tokens_per_s']:.1f}"],
                           ["student", d["student_layers"], f"{d['student_params']:,}", f"{d['translation_en_de/bleu']:.2f}",
                            f"{d['translation_en_de/chrf']:.2f}", f"{d['student_tokens_per_s']:.1f}"]])
                      + f"\n\nRetention (BLEU) {100 * d['retention']:.1f}%, speed-up {d['speedup']:.2f}x.")
    bench = HERE.parent / "benchmarks" / "generation_batching.txt"
    if bench.is_file():
        blocks.append("Batched generation (experiments/benchmarks/generation_batching.txt):\n\n```text\n"
                      + bench.read_text(encoding="utf-8").strip() + "\n```")
    print(common.write_markdown(out / "results.md", *blocks))


if __name__ == "__main__":
    main()
