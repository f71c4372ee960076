"""Generation throughput of ``GenerationModule.generate``: a batch of left-padded prompts (one
``generate`` call, the KV cache) against the same prompts one at a time, in one process, rounds
interleaved. Prints new tokens/s of each and the ratio batched / one-at-a-time (goal: >= 5 at
batch 16).

    python experiments/benchmarks/generation_batching.py                       # SmolLM2-135M-Instruct
    python experiments/benchmarks/generation_batching.py --backbone tiny-llama --rounds 1

Prompts: the first ``--batch`` Multi30k validation sentences as "Translate English to German: ...",
greedy, ``--max-new-tokens`` each. Counted tokens: those generated up to and including each row's
end token (a row that ends early in a batch still costs the batch its remaining steps: that is
counted against batching, not for it). The first round warms up and is not reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401  (offline defaults, set before instructrec is imported)

import torch  # noqa: E402

from instructrec.data import InstructionDataModule  # noqa: E402
from instructrec.models import GenerationModule  # noqa: E402
from instructrec.models.generation import DecodingOptions  # noqa: E402
from instructrec.paths import data_root  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sentences = (data_root() / "multi30k" / "val.en").read_text(encoding="utf-8").splitlines()[: args.batch]
    prompts = [f"Translate English to German: {s}" for s in sentences]
    scratch = Path(tempfile.mkdtemp(prefix="generation-batching-"))
    (scratch / "prompts.txt").write_text("\n\n".join(prompts) + "\n", encoding="utf-8")
    data = InstructionDataModule(predict=str(scratch / "prompts.txt"), tokenizer=args.backbone, system_prompt="",
                                 cache_dir=str(scratch / "cache"))
    model = GenerationModule({"translation": {"type": "translation"}}, backbone=args.backbone,
                             decoding=DecodingOptions(max_new_tokens=args.max_new_tokens)).eval()
    batch = data.batch_from_texts(prompts)
    singles = [data.batch_from_texts([p]) for p in prompts]

    def new_tokens(texts: list[str]) -> int:
        return sum(min(len(ids) + 1, args.max_new_tokens) for ids in model.tokenizer(texts, add_special_tokens=False)["input_ids"])

    def batched():
        return model.generate(batch["prompt_ids"], batch["prompt_mask"])

    def one_at_a_time():
        return [model.generate(b["prompt_ids"], b["prompt_mask"])[0] for b in singles]

    rates = {"batched": [], "one_at_a_time": []}
    for round_ in range(args.rounds + 1):
        order = [("batched", batched), ("one_at_a_time", one_at_a_time)]
        for name, run in order if round_ % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            texts = run()
            seconds = time.perf_counter() - start
            if round_ > 0:
                rates[name].append(new_tokens(texts) / seconds)
    ratios = [b / o for b, o in zip(rates["batched"], rates["one_at_a_time"])]
    print(f"backbone {args.backbone}, {args.batch} prompts, greedy, {args.max_new_tokens} new tokens at most, "
          f"{args.threads} threads, {args.rounds} rounds")
    for name, values in rates.items():
        print(f"{name:>14}: {statistics.mean(values):8.1f} new tokens/s")
    print(f"batched / one-at-a-time: {statistics.mean(ratios):.2f}x (per round: {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
