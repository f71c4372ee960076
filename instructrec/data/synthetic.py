"""A generator of instruction records for a small, learnable sentiment task.

The quickstart's data: product reviews built from phrases whose sentiment is known (with negation,
so that word counting alone does not solve it), each asked through one of several instruction
phrasings. Deterministic in its seed; ``python -m instructrec.data.synthetic OUT_DIR`` writes the
``train/val/test.jsonl`` files that ship in ``instructrec/resources/quickstart``.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from instructrec.data.files import write_jsonl
from instructrec.instructions import Instruction, render

LABELS = ["positive", "negative", "neutral"]
SUBJECTS = [
    "The battery", "The screen", "The delivery", "The customer service", "The price", "The camera",
    "The keyboard", "The hotel room", "The food", "The software update", "The packaging", "The sound",
]
POSITIVE = ["excellent", "great", "reliable", "fantastic", "impressive", "wonderful", "superb", "fast"]
NEGATIVE = ["terrible", "awful", "broken", "disappointing", "slow", "useless", "poor", "noisy"]
NEUTRAL = ["average", "as expected", "standard", "ordinary", "acceptable", "typical"]
OPENERS = ["", "Honestly, ", "After two weeks, ", "Overall, ", "To be fair, ", "In my opinion, "]
TAILS = ["", " I bought it last month.", " It arrived on Tuesday.", " My brother has the same one.", " It is blue."]
PHRASINGS = [
    "Classify the sentiment of the following review",
    "Is this review positive, negative or neutral?",
    "Decide how the customer feels about the product",
    "Label the opinion expressed in the text",
]


def review(rng: random.Random) -> tuple[str, str]:
    """One review and its label."""
    label = rng.choice(LABELS)
    subject = rng.choice(SUBJECTS)
    if label == "neutral":
        clause = f"{subject} was {rng.choice(NEUTRAL)}"
    else:
        # Half the time the label comes from a negated word of the opposite polarity.
        negated = rng.random() < 0.5
        words = POSITIVE if (label == "positive") != negated else NEGATIVE
        clause = f"{subject} was {'not ' if negated else ''}{rng.choice(words)}"
    opener = rng.choice(OPENERS)
    if opener:
        clause = clause[0].lower() + clause[1:]
    return f"{opener}{clause}.{rng.choice(TAILS)}", label


def generate(n: int, seed: int) -> list[dict]:
    """``n`` JSONL rows ``{"id", "text"}``, each text a rendered classification instruction."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        text, label = review(rng)
        fields = {"instruction": rng.choice(PHRASINGS), "text": text, "options": list(LABELS), "answer": label}
        rows.append({"id": f"synthetic-{seed}-{i}", "text": render(Instruction("classification", "en", fields))})
    return rows


SPLITS = {"train": (1200, 1), "val": (200, 2), "test": (300, 3)}


def write_splits(folder: Path) -> None:
    for split, (n, seed) in SPLITS.items():
        write_jsonl(folder / f"{split}.jsonl", generate(n, seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    write_splits(parser.parse_args().out_dir)


if __name__ == "__main__":
    main()
