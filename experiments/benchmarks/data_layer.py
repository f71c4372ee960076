"""Data-layer benchmark: every figure is a ratio measured side by side in this one run.

1. Instructions parsed per second on one core (goal >= 50,000/s).
2. Batched encoding (``datasets.map(batched=True)``, what ``InstructionDataModule`` runs) vs a
   per-example tokenizer loop over the same records (goal >= 5x).
3. A cached second load of a split vs the first load (parse, encode, write Arrow) (goal >= 20x).

    python experiments/benchmarks/data_layer.py [--records 20000] [--backbone auto]

Records: SST-2 training sentences from ``$INSTRUCTREC_DATA`` when present, else the shipped
synthetic reviews repeated. Results are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401  (offline defaults, set before instructrec is imported)

import torch  # noqa: E402

from instructrec import backbones  # noqa: E402
from instructrec.data import encoding, synthetic  # noqa: E402
from instructrec.data.datamodule import InstructionDataModule  # noqa: E402
from instructrec.data.files import write_jsonl  # noqa: E402
from instructrec.data.loading import collect, parsed  # noqa: E402
from instructrec.paths import data_root  # noqa: E402
from instructrec.data.raw import read_sst2  # noqa: E402
from instructrec.instructions import parse_instruction, render  # noqa: E402
from instructrec.instructions.templates import get_template  # noqa: E402


def instruction_texts(n: int) -> tuple[list[str], str]:
    sst2 = data_root() / "sst2_glue" / "glue_train_part1.tsv"
    if sst2.is_file():
        template = get_template("sst2")
        records = read_sst2(sst2)[:n]
        return [render(template.apply(r, seed=0, index=i)) for i, r in enumerate(records)], f"SST-2 train ({sst2.name})"
    rows = synthetic.generate(n, seed=0)
    return [row["text"] for row in rows], "synthetic reviews"


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def parse_rate(texts: list[str]) -> float:
    seconds = best_of(5, lambda: [parse_instruction(t) for t in texts])
    return len(texts) / seconds


def encoding_speedup(texts: list[str], tokenizer) -> tuple[float, float, float]:
    from datasets import Dataset

    examples = collect(parsed(read_texts(texts))).examples
    label_names = list(examples[0].instruction.fields["options"])
    columns = encoding.classification_columns(examples, label_names)
    encode = encoding.encode_classification(tokenizer, 128)

    def batched():
        raw = Dataset.from_dict(columns)
        raw.map(encode, batched=True, remove_columns=raw.column_names, keep_in_memory=True, load_from_cache_file=False)

    def per_example():
        for text in columns["input_text"]:
            tokenizer(text, truncation=True, max_length=128)

    loop = best_of(2, per_example)
    fast = best_of(2, batched)
    return loop / fast, len(texts) / loop, len(texts) / fast


def read_texts(texts: list[str]):
    from instructrec.data.files import TextRecord

    return (TextRecord(t, "<bench>", i, f"b{i}") for i, t in enumerate(texts, start=1))


def cache_speedup(texts: list[str], backbone: str) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        write_jsonl(path, [{"id": f"b{i}", "text": t} for i, t in enumerate(texts)])

        def load():
            dm = InstructionDataModule(train=str(path), tokenizer=backbone, val_fraction=0.0, cache_dir=f"{tmp}/cache")
            dm.setup("fit")
            return dm

        start = time.perf_counter()
        load()
        first = time.perf_counter() - start
        second = best_of(3, load)
        return first / second, first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--backbone", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(1)
    backbone = backbones.canonical(args.backbone)
    texts, source = instruction_texts(args.records)
    tokenizer = backbones.load_tokenizer(backbone)

    rate = parse_rate(texts)
    speedup, loop_rate, batched_rate = encoding_speedup(texts, tokenizer)
    cached, first, second = cache_speedup(texts, backbone)

    print(f"\n{len(texts):,} instructions from {source}; tokenizer: {backbone}\n")
    print("| measure | value | goal |")
    print("|---|---|---|")
    print(f"| instructions parsed per second (1 core) | {rate:,.0f} | >= 50,000 |")
    print(f"| batched encoding vs per-example loop | {speedup:.1f}x ({batched_rate:,.0f}/s vs {loop_rate:,.0f}/s) | >= 5x |")
    print(f"| cached second load vs first | {cached:.1f}x ({second:.3f} s vs {first:.2f} s) | >= 20x |")


if __name__ == "__main__":
    main()
