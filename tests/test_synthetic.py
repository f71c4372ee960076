from pathlib import Path

from instructrec.data import synthetic
from instructrec.data.files import read_instruction_file
from instructrec.instructions import parse_instruction

SHIPPED = Path(synthetic.__file__).resolve().parents[1] / "resources" / "quickstart"


def test_shipped_files_are_what_the_generator_writes(tmp_path):
    synthetic.write_splits(tmp_path)
    for split in synthetic.SPLITS:
        assert (tmp_path / f"{split}.jsonl").read_bytes() == (SHIPPED / f"{split}.jsonl").read_bytes(), split


def test_generated_instructions_parse_with_their_label():
    rows = synthetic.generate(300, seed=5)
    assert rows == synthetic.generate(300, seed=5)
    parsed = [parse_instruction(row["text"]) for row in rows]
    assert {p.task for p in parsed} == {"classification"}
    assert {p.answer for p in parsed} == set(synthetic.LABELS)
    assert all(p.fields["options"] == synthetic.LABELS for p in parsed)


def test_negation_flips_the_label():
    records = list(read_instruction_file(SHIPPED / "train.jsonl"))
    texts = [parse_instruction(r.text).fields for r in records]
    negated_positive = [t for t in texts if " was not " in t["text"] and any(w in t["text"] for w in synthetic.POSITIVE)]
    assert negated_positive and all(t["answer"] == "negative" for t in negated_positive)
