"""How good are the teacher's labels on the transfer set? For every cached teacher pass over a
training split with transfer-set rows, the share of those rows whose hidden gold label is the
argmax of the teacher's cached logits.

Reads only what the runs cached (nothing is computed again): each ``teacher-*`` entry of the data
cache names, in its ``meta.json``, the encoded split it is row-aligned with
(:mod:`instructrec.distill.teacher_cache`); the gold labels come from the raw SST-2 file.

    python experiments/distill_transfer_sst2/teacher_labels.py --cache-dir .cache/instructrec \\
        --raw ../shared/data/sst2_glue/glue_train_part1.tsv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--cache-dir", default=".cache/instructrec")
    arguments.add_argument("--raw", required=True, help="the transfer set's raw SST-2 file")
    args = arguments.parse_args(argv)

    from datasets import load_from_disk

    from instructrec.data.raw import read_sst2
    from instructrec.distill.data import TRANSFER_PREFIX

    gold = {record["id"]: record["label"] for record in read_sst2(args.raw)}
    cache = Path(args.cache_dir)
    for entry in sorted(cache.glob("teacher-*/meta.json")):
        meta = json.loads(entry.read_text(encoding="utf-8"))
        data_folder = cache / str(meta.get("data_cache")) / "dataset"
        if not data_folder.is_dir():
            continue
        ids = load_from_disk(str(data_folder))["example_id"]
        logits = load_from_disk(str(entry.parent / "dataset"))["teacher_logits"]
        if len(ids) != len(logits):  # a part of a split (gold or transfer rows): not this layout
            continue
        labels = meta["settings"]["labels"]
        pairs = [(gold[i.removeprefix(TRANSFER_PREFIX)], labels[max(range(len(row)), key=row.__getitem__)])
                 for i, row in zip(ids, logits) if i.startswith(TRANSFER_PREFIX) and i.removeprefix(TRANSFER_PREFIX) in gold]
        if pairs:
            agree = sum(g == t for g, t in pairs)
            print(f"{entry.parent.name}: the teacher's label is the gold one on {agree}/{len(pairs)} "
                  f"transfer-set sentences ({agree / len(pairs):.2%})")


if __name__ == "__main__":
    main()
