"""`instructrec ask`: knowledge-base files + a reader checkpoint -> answers with their traces."""

from __future__ import annotations

import json

import pytest
import torch

from instructrec.cli import main
from instructrec.models.qa_reasoning import QAReasoningModule
from instructrec.qa.ask import load_knowledge_base

DOCUMENTS = [
    {"id": "milk", "text": "Mary got the milk in the kitchen."},
    {"id": "garden", "text": "Mary travelled to the garden."},
    {"id": "sheep", "text": "Sheep are afraid of wolves."},
]
BABI = "1 Mary moved to the bathroom.\n2 John went to the hallway.\n3 Where is Mary? \tbathroom\t1\n"


@pytest.fixture
def checkpoint(tmp_path):
    """A reader checkpoint as `instructrec fit` writes it (hyper-parameters with the class path)."""
    torch.manual_seed(0)
    model = QAReasoningModule("tiny-bert")
    path = tmp_path / "reader.ckpt"
    hparams = {**dict(model.hparams), "_class_path": "instructrec.models.QAReasoningModule"}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams}, path)
    return path


def test_answers_with_a_two_hop_trace(tmp_path, checkpoint, capsys):
    kb = tmp_path / "kb.jsonl"
    kb.write_text("".join(json.dumps(d) + "\n" for d in DOCUMENTS))
    main(["ask", "--kb", str(kb), "--ckpt", str(checkpoint), "--hops", "2", "--json", "Where is the milk?"])
    record = json.loads(capsys.readouterr().out.strip())
    assert record["question"] == "Where is the milk?"
    # Hop 1 finds the milk; hop 2, querying with that passage too, finds Mary's other fact.
    assert [(s["hop"], s["passage_id"]) for s in record["trace"]] == [(1, "milk#0"), (2, "garden#0")]
    assert record["passage_id"] in {"milk#0", "garden#0", "sheep#0"}
    read = {d["id"] + "#0": d["text"] for d in DOCUMENTS}[record["passage_id"]]
    assert record["answer"] and record["answer"] in read, "an untrained reader still answers with a span of what it read"


def test_knowledge_base_reads_each_format_by_extension(tmp_path):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(json.dumps(DOCUMENTS[0]) + "\n")
    babi = tmp_path / "qa1_train.txt"
    babi.write_text(BABI)
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "A b c.", "qas": []}]}]}))
    kb = load_knowledge_base([str(jsonl), str(babi), str(squad)])
    assert [p.id for p in kb] == ["milk#0", "s0:1", "s0:2", "T#0"]
    with pytest.raises(ValueError, match="unknown knowledge-base format '.csv'"):
        load_knowledge_base([str(tmp_path / "x.csv")]) if (tmp_path / "x.csv").write_text("a") else None


def test_bad_inputs_exit_2_with_a_message(tmp_path, checkpoint, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["ask", "--kb", str(tmp_path / "missing.jsonl"), "--ckpt", str(checkpoint), "Who?"])
    assert exit.value.code == 2
    assert "missing.jsonl does not exist" in capsys.readouterr().err


def test_stories_follow_the_bridge_and_read_the_chain(tmp_path, checkpoint, capsys):
    story = tmp_path / "qa2_test.txt"
    story.write_text("1 Mary moved to the garden.\n2 Mary got the milk there.\n3 John went to the garden.\n"
                     "4 Mary went to the hall.\n")
    main(["ask", "--kb", str(story), "--ckpt", str(checkpoint), "--stories", "--select", "1", "10", "--json",
          "Where is the milk?"])
    record = json.loads(capsys.readouterr().out.strip())
    # Hop 1: the milk's latest fact; hop 2: Mary's facts, latest first; John's fact is never selected.
    assert [(s["hop"], s["passage_id"]) for s in record["trace"]] == [(1, "s0:2"), (2, "s0:4"), (2, "s0:1")]
    facts = {"s0:1": "Mary moved to the garden.", "s0:2": "Mary got the milk there.", "s0:4": "Mary went to the hall."}
    assert record["answer"] and record["answer"] in facts[record["passage_id"]]


def test_a_window_without_room_exits_2_with_a_message(tmp_path, checkpoint, capsys):
    story = tmp_path / "qa1_test.txt"
    story.write_text(BABI.split("3 ")[0])
    with pytest.raises(SystemExit) as exit:
        main(["ask", "--kb", str(story), "--ckpt", str(checkpoint), "--max-length", "64", "--doc-stride", "64", "Where is Mary?"])
    assert exit.value.code == 2
    assert "doc_stride=64 must be less than max_length=64" in capsys.readouterr().err


def test_generate_writes_the_answer_from_the_retrieved_passages(tmp_path, capsys):
    """`--generate`: the same retrieval and trace; the answer is what the generation model writes
    for the qa instruction of the question and the passages read, through its chat template with
    the system turn the checkpoint was trained with."""
    from instructrec.data.generative import prompt_ids
    from instructrec.instructions import Instruction, render
    from instructrec.models import GenerationModule
    from instructrec.models.generation import DecodingOptions
    from test_generation import sharpened

    system = "Answer in a word."
    model = sharpened(GenerationModule({"qa": {"type": "qa", "system_prompt": system}}, decoding=DecodingOptions(max_new_tokens=5)))
    path = tmp_path / "generator.ckpt"
    hparams = {**dict(model.hparams), "_class_path": "instructrec.models.GenerationModule"}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams}, path)
    kb = tmp_path / "kb.jsonl"
    kb.write_text("".join(json.dumps(d) + "\n" for d in DOCUMENTS))
    main(["ask", "--kb", str(kb), "--ckpt", str(path), "--generate", "--max-new-tokens", "5", "--passages", "2",
          "--json", "Where is the milk?"])
    record = json.loads(capsys.readouterr().out.strip())
    assert [(s["hop"], s["passage_id"]) for s in record["trace"]] == [(1, "milk#0"), (2, "garden#0")]
    assert record["passage_id"] == "milk#0" and record["score"] is None
    context = " ".join(d["text"] for d in DOCUMENTS[:2])
    prompt = render(Instruction("qa", "en", {"question": "Where is the milk?", "context": context}))
    ids, _ = prompt_ids(model.tokenizer, prompt, 512, system_prompt=system)
    expected = model.generate(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0]
    assert record["answer"] == expected and expected
