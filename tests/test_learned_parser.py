"""The learned instruction parser: its corpus (exact spans, a split by data set, determinism), the
BIO round trip, a tiny training run into a scratch model cache, and the missing-weights error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from instructrec.errors import InputError
from instructrec.instructions import Instruction
from instructrec.instructions.corpus import (
    HELDOUT_DATASETS,
    HELDOUT_PATTERNS,
    SPAN_FIELDS,
    Example,
    build_corpus,
    fill,
    issue_examples,
    promptsource_examples,
    shorten_context,
    unseen_promptsource_sets,
)
from instructrec.models import instruction_parser
from instructrec.models.instruction_parser import (
    TAGS,
    _decode,
    _questions_to_their_mark,
    _whole_words,
    encode,
    learned_parse,
    tag_ids,
    train_parser,
)


def check_spans(examples: list[Example]) -> None:
    """Every span is its value exactly, and the gold instruction carries those values."""
    for example in examples:
        gold = example.instruction()
        assert gold.task == example.task and gold.language == example.language
        for field, start, end in example.spans:
            assert field in SPAN_FIELDS
            value = example.text[start:end]
            assert value and value == value.strip(), (example.origin, field, value)
            if field == "option":
                assert value in gold.fields["options"]
            elif field in gold.fields and sum(f == field for f, _, _ in example.spans) == 1:
                assert gold.fields[field] == value, (example.origin, field)


def test_paraphrase_corpus_spans_are_exact():
    examples = build_corpus("train", data_root=None, paraphrases=300) + build_corpus("heldout", data_root=None, paraphrases=100)
    assert {e.task for e in examples} == {"qa", "classification", "translation", "generation"}
    assert {e.language for e in examples} == {"en", "zh"}
    check_spans(examples)


def test_issue_examples_are_labelled_as_the_issue_reads_them():
    by_task = {e.task: e.instruction() for e in issue_examples()}
    assert by_task["qa"].fields == {"question": "Who wrote Hamlet", "context": "Hamlet is a play by Shakespeare"}
    assert by_task["classification"].fields["options"] in (["positive", "negative"], ["Mars", "Jupiter", "Venus"])
    assert by_task["translation"].fields == {
        "source_language": "English", "target_language": "German", "text": "The cat sleeps on the sofa."
    }
    assert by_task["generation"].fields["prompt"].startswith("Summarize the following paragraph")


def test_fill_lists_options_in_prose_with_a_span_each():
    import random

    text, spans = fill("Is this {options:list}? {text}", {"options": ["a b", "c"], "text": "Hi."}, "en", random.Random(0))
    assert text == "Is this (A) a b (B) c? Hi."
    assert [(f, text[s:e]) for f, s, e in spans] == [("option", "a b"), ("option", "c"), ("text", "Hi.")]


def test_corpus_is_a_function_of_the_seed():
    first = build_corpus("train", data_root=None, paraphrases=120, seed=3)
    assert first == build_corpus("train", data_root=None, paraphrases=120, seed=3)
    assert first != build_corpus("train", data_root=None, paraphrases=120, seed=4)


def test_shorten_context_keeps_the_answer():
    record = {"context": "One. Two is here. Three. Four.", "answers": [{"text": "here", "answer_start": 12}]}
    short = shorten_context(record, 12)
    assert short["context"] == "Two is here." and short["answers"] == [{"text": "here", "answer_start": 7}]


@pytest.mark.slow
def test_real_corpus_spans_and_the_split(shared_data):
    train = build_corpus("train", data_root=shared_data, per_template=4, paraphrases=50)
    heldout = build_corpus("heldout", data_root=shared_data, per_template=4, paraphrases=50)
    check_spans(train + heldout)
    assert not {e.dataset for e in train} & HELDOUT_DATASETS
    assert {e.dataset for e in heldout} >= {"ag_news", "xquad"}
    held_out_origins = ("promptsource/ag_news/", "promptsource/xquad_xquad.en/", "template/agnews", "heldout-pattern/")
    assert not [e.origin for e in train if e.origin.startswith(held_out_origins)]
    assert {e.origin.rsplit("/", 1)[0] for e in heldout if e.origin.startswith("promptsource/")} == {
        "promptsource/ag_news", "promptsource/xquad_xquad.en"
    }
    assert not {e.text for e in train} & {e.text for e in heldout}
    # every task and both labelling outcomes of promptsource appear
    assert {e.task for e in train if e.origin.startswith("promptsource/")} == {"qa", "classification", "generation"}
    assert sum(len(p) for table in HELDOUT_PATTERNS.values() for p in table.values()) >= 10


@pytest.mark.slow
def test_training_passages_are_cut_only_when_asked(shared_data):
    def longest_context(examples):
        return max(len(e.instruction().fields["context"]) for e in examples if e.task == "qa")

    assert longest_context(build_corpus("train", data_root=shared_data, per_template=4, paraphrases=200)) <= 500
    whole = build_corpus("train", data_root=shared_data, per_template=4, paraphrases=200, max_context_chars=None)
    assert longest_context(whole) > 1000
    check_spans(whole)


def test_every_unseen_template_renders_real_records_with_exact_spans(shared_data):
    """The parser experiment's unseen promptsource files (shipped beside it) fill from our readers:
    every template gives examples (none fails on a column our records lack), spans exact, held out."""
    from pathlib import Path

    from instructrec.instructions.promptsource import load_promptsource

    folder = Path(__file__).resolve().parents[1] / "experiments" / "instruction_parser" / "unseen_templates"
    sets = unseen_promptsource_sets(folder)
    examples = promptsource_examples(shared_data, split="heldout", per_template=2, sets=sets)
    check_spans(examples)
    for spec in sets:
        names = {t.name for t in load_promptsource(folder / f"{spec.file}.templates.yaml")}
        made = [e for e in examples if e.dataset == spec.dataset]
        assert {e.origin for e in made} == names and len(made) == 2 * len(names)
        assert all(e.split == "heldout" for e in made)
    assert {e.task for e in examples if e.dataset == "rotten_tomatoes"} == {"classification", "generation"}
    assert {e.task for e in examples if e.dataset == "quoref"} == {"qa", "generation"}


def assert_perfect_tags_decode_to_the_gold(examples):
    from instructrec import backbones

    tokenizer = backbones.load_tokenizer("tiny-bert")
    batch = encode(tokenizer, [e.text for e in examples], 512)
    offsets = batch["offset_mapping"].tolist()
    checked = 0
    for example, row in zip(examples, offsets):
        if max(end for _, end in row) < len(example.text.rstrip()):
            continue  # cut at the window: what lies beyond is not tagged (the decoder's documented limit)
        checked += 1
        tags = tag_ids(example, row)
        probs = torch.nn.functional.one_hot(torch.tensor([max(t, 0) for t in tags]), len(TAGS)).float()
        task = torch.nn.functional.one_hot(torch.tensor(["qa", "classification", "translation", "generation"].index(example.task)), 4).float()
        instruction, confidence = _decode(example.text, row, task, probs)
        assert instruction == example.instruction(), example.text
        assert confidence == 1.0
    assert checked >= 0.9 * len(examples)


def test_perfect_tags_decode_to_the_gold_instruction():
    """BIO labels of a gold example, fed back as one-hot probabilities, decode to its instruction:
    the decoding's rules (word edges, question marks, two options, whole-text generations) agree
    with the corpus's labels."""
    assert_perfect_tags_decode_to_the_gold(build_corpus("train", data_root=None, paraphrases=150) + issue_examples())


@pytest.mark.slow
def test_perfect_tags_of_the_real_corpus_decode_to_the_gold_instruction(shared_data):
    examples = build_corpus("train", data_root=shared_data, per_template=3, paraphrases=100)
    assert {e.task for e in examples} == {"qa", "classification", "translation", "generation"}
    assert_perfect_tags_decode_to_the_gold(examples)


def test_spans_are_widened_to_the_words_they_cut():
    text = "Is a chloroplast similar to mitochondria? 问题：叶绿体"
    assert _whole_words(text, [("question", 5, 13), ("question", 28, 31)]) == [("question", 5, 16), ("question", 28, 40)]
    assert text[28:40] == "mitochondria"
    # a span already on word edges, punctuation edges and Han characters (a word each) stay as they are
    assert _whole_words(text, [("question", 0, 41), ("context", 45, 46)]) == [("question", 0, 41), ("context", 45, 46)]


@given(st.text(alphabet="ab .?é1字", min_size=1, max_size=30), st.data())
def test_widening_keeps_the_span_ends_on_word_edges_and_is_idempotent(text, data):
    start = data.draw(st.integers(0, len(text) - 1))
    end = data.draw(st.integers(start + 1, len(text)))
    [(field, wide_start, wide_end)] = _whole_words(text, [("text", start, end)])
    assert wide_start <= start and end <= wide_end
    assert _whole_words(text, [(field, wide_start, wide_end)]) == [(field, wide_start, wide_end)]
    # what was added is word characters of a spaced script (never a space, punctuation or Han)
    assert all(c.isalnum() and c != "字" for c in text[wide_start:start] + text[end:wide_end])


def test_a_question_ends_at_its_mark():
    def question(text, start, end, others=()):
        [(_, start, end), *_] = _questions_to_their_mark(text, [("question", start, end), *others])
        return text[start:end]

    text = "The answer to the question: Who wrote Hamlet? is inside the article: Hamlet is a play."
    assert question(text, 28, 48) == "Who wrote Hamlet?"  # ran past its mark ("... Hamlet? is")
    assert question(text, 28, 37) == "Who wrote Hamlet?"  # stopped short of it, nothing in between
    # another field in between, or the mark on a later line: left as tagged
    assert question(text, 28, 37, [("context", 40, 46)]) == "Who wrote"
    assert question("Who wrote\nHamlet?", 0, 9) == "Who wrote"
    # closing quotes or brackets only where the question opened them
    assert question('Q: Who recorded "Walking in Fresno?" she asked', 3, 40) == 'Who recorded "Walking in Fresno?"'
    assert question('Q: "Who wrote it?" (see above)', 4, 14) == "Who wrote it?"
    assert question("问题：谁写了《红楼梦》？上下文：……", 3, 8) == "谁写了《红楼梦》？"
    # other fields are never touched
    assert _questions_to_their_mark(text, [("context", 0, 48)]) == [("context", 0, 48)]


def one_hot_tags(tokens: list[str]) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor([TAGS.index(t) for t in tokens]), len(TAGS)).float()


def test_a_classification_with_one_option_is_read_as_a_generation():
    """"Did the reviewer enjoy the movie?" lists no labels: the corpus labels it generation, so a
    tagging of one option must not make it a one-way classification."""
    text = "Fun film. Did the reviewer enjoy the movie?"
    words = [(0, 3), (4, 9), (10, 13), (14, 17), (18, 26), (27, 32), (33, 36), (37, 43)]
    classification = torch.tensor([0.1, 0.7, 0.1, 0.1])  # TASKS order: qa, classification, translation, generation
    tags = one_hot_tags(["B-text", "I-text", "O", "O", "O", "B-option", "O", "O"])
    instruction, confidence = _decode(text, words, classification, tags)
    assert instruction == Instruction("generation", "en", {"prompt": text})
    # the generation's probability x its tags' mean: the three tokens tagged text/option have no
    # generation tag (probability 0), the other five are O (1.0)
    assert confidence == pytest.approx(0.1 * 5 / 8)
    # a generation tagged with a prompt span: without markers the prompt is the whole text
    generation = torch.tensor([0.1, 0.1, 0.1, 0.7])
    prompt_tags = one_hot_tags(["O", "O", "B-prompt", "I-prompt", "I-prompt", "O", "O", "O"])
    assert _decode(text, words, generation, prompt_tags)[0] == Instruction("generation", "en", {"prompt": text})
    marked = "Prompt: Did the reviewer enjoy it"
    marked_words = [(0, 6), (6, 7), (8, 11), (12, 15), (16, 24), (25, 30), (31, 33)]
    marked_tags = one_hot_tags(["O", "O", "B-prompt", "I-prompt", "I-prompt", "I-prompt", "I-prompt"])
    assert _decode(marked, marked_words, generation, marked_tags)[0] == Instruction(
        "generation", "en", {"prompt": "Did the reviewer enjoy it"}
    )
    two_options = one_hot_tags(["B-text", "I-text", "O", "B-option", "O", "B-option", "O", "O"])
    instruction, confidence = _decode(text, words, classification, two_options)
    assert instruction == Instruction("classification", "en", {"text": "Fun film.", "options": ["the", "enjoy"]})
    assert confidence == pytest.approx(0.7)


@pytest.fixture
def model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTREC_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(instruction_parser, "_LOADED", {})
    return tmp_path / "models"


def tiny_training(output=None, steps=3):
    corpus = build_corpus("train", data_root=None, paraphrases=48)
    return train_parser(output, max_steps=steps, backbone="tiny-bert", corpus=corpus, batch_size=8, max_length=96, progress=False)


ODD_TEXTS = [
    "Question: Who wrote Hamlet? Context: Hamlet is a play by Shakespeare.",
    "Is this review positive or negative? The battery died in a day.",
    "问题：谁写了《红楼梦》？\n上下文：《红楼梦》是曹雪芹的作品。",
    "",
    "   \n\t",
    "🙂🙂🙂",
    "x" * 5000,
    "Options: a, a, a",
    ":::: \\: \x00",
]


def test_tiny_training_writes_weights_that_learned_parse_loads(model_cache):
    folder = tiny_training()
    assert folder == model_cache / "instruction-parser"
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "heads.safetensors", "parser.json", "tokenizer.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".ckpt", ".pkl"))]
    results = learned_parse(ODD_TEXTS)
    assert len(results) == len(ODD_TEXTS)
    for instruction, confidence in results:
        assert instruction is None or isinstance(instruction, Instruction)
        assert 0.0 <= confidence <= 1.0
    assert results[3] == (None, 0.0) and results[4] == (None, 0.0)


def test_training_is_reproducible(tmp_path, model_cache):
    first, second = tiny_training(tmp_path / "a", steps=2), tiny_training(tmp_path / "b", steps=2)
    for name in ("heads.safetensors", "model.safetensors"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_training_continues_from_a_parser_folder(tmp_path, model_cache):
    first = tiny_training(tmp_path / "first", steps=1)
    corpus = build_corpus("train", data_root=None, paraphrases=24, seed=1)
    second = train_parser(tmp_path / "second", max_steps=1, corpus=corpus, batch_size=8, max_length=64, progress=False, init_from=first)
    meta = json.loads((second / "parser.json").read_text())
    assert meta["backbone"] == "tiny-bert" and meta["training"]["continued_from"]["steps"] == 1
    assert (first / "heads.safetensors").read_bytes() != (second / "heads.safetensors").read_bytes()


def test_missing_weights_name_the_command(model_cache):
    with pytest.raises(InputError) as error:
        learned_parse(["Question: who? Context: me."])
    assert "instructrec train-parser" in error.value.hint
    assert str(model_cache / "instruction-parser") in str(error.value)


def test_train_parser_command_is_registered_and_checks_its_steps(capsys):
    from instructrec import cli
    from instructrec.commands import COMMANDS

    assert "train-parser" in COMMANDS
    with pytest.raises(SystemExit) as exit:
        cli.main(["train-parser", "--steps", "0"])
    assert exit.value.code == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        cli.main(["train-parser", "--max-context-chars", "-1"])
    assert exit.value.code == 2
    assert "--max-context-chars must be 0 (whole passages) or more, got -1" in capsys.readouterr().err


def test_corpus_module_does_not_import_torch():
    code = "import sys, instructrec.instructions.corpus; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
