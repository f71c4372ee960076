"""The generation family on the tiny random Llama: answer-only loss, batched decoding, LoRA merge,
metrics equal to sacreBLEU's, a fit that writes its generations, export and reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from instructrec import backbones
from instructrec.batch import IGNORE_LABEL
from instructrec.data import InstructionDataModule
from instructrec.data.generative import CausalLMCollator, chat_text, encode_generation, prompt_ids
from instructrec.models import GenerationModule
from instructrec.models.generation import DecodingOptions, cut_at_stop, trained_system_prompt
from instructrec.models.text_metrics import AnswerOverlap, RougeL, SacreBleuStatistics

TASKS = {"translation": {"type": "translation"}}
PAIRS = [
    ("A dog runs on the grass.", "Ein Hund läuft auf dem Gras."),
    ("Two men are standing.", "Zwei Männer stehen."),
    ("A girl in a red coat.", "Ein Mädchen in einem roten Mantel."),
    ("People walk down the street at night.", "Menschen gehen nachts die Straße entlang."),
]


def translation(source: str, target: str | None = None) -> str:
    text = f"Translate English to German: {source}"
    return text + (f"\nAnswer: {target}" if target is not None else "")


def write_translations(path: Path, pairs=PAIRS) -> Path:
    path.write_text("".join(json.dumps({"text": translation(s, t)}) + "\n" for s, t in pairs), encoding="utf-8")
    return path


@pytest.fixture
def tokenizer():
    return backbones.load_tokenizer("tiny-llama")


def sharpened(module: GenerationModule) -> GenerationModule:
    """Random weights large enough that greedy choices are far apart (a freshly initialised tiny
    model's logits are nearly flat, so float rounding could flip an argmax)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in module.model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.5)
    return module.eval()


def test_the_loss_reads_the_answer_tokens_only(tokenizer):
    encode = encode_generation(tokenizer, max_length=256, max_answer_length=64)
    row = encode({"prompt": ["Translate English to German: A dog."], "answer": ["Ein Hund."],
                  "example_id": ["a"], "references": [["Ein Hund."]]})
    prompt = tokenizer(chat_text(tokenizer, "Translate English to German: A dog."), add_special_tokens=False)["input_ids"]
    answer = tokenizer("Ein Hund.", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert row["input_ids"][0] == prompt + answer
    assert row["labels"][0] == [IGNORE_LABEL] * len(prompt) + answer
    assert row["prompt_length"][0] == len(prompt)
    assert tokenizer.decode(answer) == "Ein Hund.<|im_end|>"


def test_the_answer_span_loss_equals_the_full_models_loss(tmp_path):
    data = InstructionDataModule(train=str(write_translations(tmp_path / "t.jsonl")), tokenizer="tiny-llama",
                                 cache_dir=str(tmp_path / "cache"))
    model = sharpened(GenerationModule(TASKS))
    batch = data.batch_from_texts([translation(s, t) for s, t in PAIRS[:3]] + [translation("No answer here.")])
    full = model(batch["input_ids"], batch["attention_mask"], batch["labels"]).loss
    assert float(model.lm_loss(batch)) == pytest.approx(float(full), rel=1e-5)


def test_a_long_answer_is_cut_and_still_ends(tokenizer):
    encode = encode_generation(tokenizer, max_length=256, max_answer_length=5)
    row = encode({"prompt": ["p"], "answer": ["abcdefgh"], "example_id": ["a"], "references": [["abcdefgh"]]})
    answer = [t for t in row["labels"][0] if t != IGNORE_LABEL]
    assert tokenizer.decode(answer) == "abcd<|im_end|>"


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=300), st.integers(min_value=40, max_value=200))
def test_a_long_prompt_is_cut_inside_the_user_text_never_in_the_template(text, max_length):
    tokenizer = backbones.load_tokenizer("tiny-llama")
    text = text.strip() or "x"
    ids, cut = prompt_ids(tokenizer, text, max_length)
    full = tokenizer(chat_text(tokenizer, text), add_special_tokens=False)["input_ids"]
    assert len(ids) <= max_length
    assert cut == (len(full) > max_length)
    decoded = tokenizer.decode(ids)
    assert decoded.startswith("<|im_start|>user\n") and decoded.endswith("<|im_end|>\n<|im_start|>assistant\n")
    if not cut:
        assert ids == full


def test_the_collator_left_pads_prompts_and_right_pads_answers():
    rows = [
        {"input_ids": [5, 6, 7, 8], "labels": [IGNORE_LABEL, IGNORE_LABEL, 7, 8], "prompt_length": 2,
         "example_id": "a", "prompt": "p", "references": ["r"]},
        {"input_ids": [5, 6, 7], "labels": [IGNORE_LABEL, IGNORE_LABEL, IGNORE_LABEL], "prompt_length": 3,
         "example_id": "b", "prompt": "q", "references": []},
    ]
    batch = CausalLMCollator(pad_token_id=0, task="t")(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [5, 6, 7, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [[IGNORE_LABEL, IGNORE_LABEL, 7, 8], [IGNORE_LABEL] * 4]
    assert batch["prompt_ids"].tolist() == [[0, 5, 6], [5, 6, 7]]
    assert batch["prompt_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert batch["example_id"] == ["a", "b"] and batch["references"] == [["r"], []] and batch["task"] == "t"


def test_batched_generation_equals_one_at_a_time(tmp_path):
    data = InstructionDataModule(predict=str(write_translations(tmp_path / "p.jsonl")), tokenizer="tiny-llama",
                                 cache_dir=str(tmp_path / "cache"))
    model = sharpened(GenerationModule(TASKS, decoding=DecodingOptions(max_new_tokens=12)))
    texts = [translation(s) for s, _ in PAIRS]
    batched = model.predict_step(data.batch_from_texts(texts), 0)
    alone = [model.predict_step(data.batch_from_texts([text]), 0)[0] for text in texts]
    assert [row["prediction"] for row in batched] == [row["prediction"] for row in alone]
    assert len({row["prediction"] for row in batched}) > 1  # the prompts lead to different texts
    beams = GenerationModule(TASKS, decoding=DecodingOptions(max_new_tokens=12, num_beams=3))
    beams.load_state_dict(model.state_dict())
    beams.eval()
    assert [r["prediction"] for r in beams.predict_step(data.batch_from_texts(texts), 0)] == [
        beams.predict_step(data.batch_from_texts([t]), 0)[0]["prediction"] for t in texts
    ]


def test_stop_strings_end_generation_and_are_cut():
    assert cut_at_stop("Ein Hund.\nQuestion: next", ["\nQuestion:", "###"]) == "Ein Hund."
    assert cut_at_stop("  no stop  ", ["###"]) == "no stop"
    assert cut_at_stop("a###b\nQuestion:", ["\nQuestion:", "###"]) == "a"


def test_lora_merged_weights_give_the_unmerged_outputs():
    torch.manual_seed(0)
    model = GenerationModule(TASKS, lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "down_proj"]})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():  # LoRA's B starts at zero: give the adapters something to merge
        for name, parameter in model.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    model.eval()
    ids = torch.randint(3, 200, (2, 17))
    adapted = model(ids).logits
    merged = model.merged_model().eval()
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(merged(input_ids=ids).logits, adapted, atol=1e-5, rtol=1e-4)
    with model.model.disable_adapter():  # the adapters change the outputs: the merge is not vacuous
        assert not torch.allclose(model.model(input_ids=ids).logits, adapted, atol=1e-3)


def test_sacrebleu_statistics_equal_sacrebleu_over_several_updates():
    import sacrebleu

    hypotheses = ["Ein Hund läuft im Gras.", "Zwei Männer stehen", "Ein Mädchen in einem roten Mantel.", "x"]
    references = ["Ein Hund rennt im Gras.", "Zwei Männer stehen am Strand.", "Ein Mädchen in einem roten Mantel.", "Menschen"]
    for name, corpus in (("bleu", sacrebleu.corpus_bleu), ("chrf", sacrebleu.corpus_chrf)):
        metric = SacreBleuStatistics(name)
        metric.update(hypotheses[:2], [[r] for r in references[:2]])
        metric.update(hypotheses[2:], [[r] for r in references[2:]])
        assert float(metric.compute()) == pytest.approx(corpus(hypotheses, [references]).score, abs=1e-9)


def test_answer_overlap_and_rouge_take_the_best_reference():
    f1, em = AnswerOverlap("f1"), AnswerOverlap("exact_match")
    for metric in (f1, em):
        metric.update(["the Eiffel Tower", "Paris France"], [["Eiffel Tower", "a tower"], ["Paris"]])
        metric.update(["nothing"], [[]])  # no references: not counted
    assert float(em.compute()) == pytest.approx(50.0)
    assert float(f1.compute()) == pytest.approx(100 * (1.0 + 2 / 3) / 2)
    rouge = RougeL()
    rouge.update(["a b c d"], [["a b x d", "a b c d"]])
    assert float(rouge.compute()) == pytest.approx(100.0)


def test_a_tiny_fit_writes_generations_and_exports_a_causal_lm(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from instructrec.cli import main
    from instructrec.export import export_checkpoint
    from instructrec.models.checkpoints import load_module

    train = write_translations(tmp_path / "train.jsonl", PAIRS * 4)
    val = write_translations(tmp_path / "val.jsonl")
    root = tmp_path / "run"
    main(["fit", "--model", "instructrec.models.GenerationModule", "--model.init_args.backbone", "tiny-llama",
          "--model.init_args.lora", '{"r": 4, "alpha": 8, "dropout": 0.0}',
          "--model.init_args.decoding.max_new_tokens", "6", "--model.init_args.learning_rate", "1e-2",
          "--data", "instructrec.data.InstructionDataModule", "--data.init_args.train", str(train),
          "--data.init_args.val", str(val), "--data.init_args.batch_size", "4", "--data.init_args.system_prompt", "Be brief.",
          "--data.init_args.cache_dir", str(tmp_path / "cache"), "--trainer.max_steps", "4",
          "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
          "--trainer.default_root_dir", str(root), "--trainer.num_sanity_val_steps", "0"])
    generations = [json.loads(line) for line in (root / "generations" / "val-step4-translation.jsonl").read_text().splitlines()]
    assert [g["references"] for g in generations] == [[t] for _, t in PAIRS]
    assert all(g["prompt"] == translation(s) for g, (s, _) in zip(generations, PAIRS))
    checkpoint = next((root / "checkpoints").glob("*.ckpt"))
    model = load_module(checkpoint).eval()
    assert isinstance(model, GenerationModule) and model.hparams.lora["r"] == 4
    assert trained_system_prompt(model) == "Be brief."  # the checkpoint remembers it: ask and serve use it
    out = export_checkpoint(checkpoint, tmp_path / "export")
    assert "GenerationModule" in (out / "README.md").read_text()
    exported = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    data = InstructionDataModule(predict=str(val), tokenizer=str(out), cache_dir=str(tmp_path / "cache"))
    batch = data.batch_from_texts([translation(s) for s, _ in PAIRS])
    ours = model.generate(batch["prompt_ids"], batch["prompt_mask"])
    theirs = exported.generate(input_ids=batch["prompt_ids"], attention_mask=batch["prompt_mask"], max_new_tokens=6,
                               do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    assert [t.strip() for t in tokenizer.batch_decode(theirs[:, batch["prompt_ids"].shape[1]:], skip_special_tokens=True)] == ours
    assert backbones.is_causal_lm(str(out))

    questions = write_translations(tmp_path / "predict.jsonl", [(s, None) for s, _ in PAIRS])
    main(["predict", "--model", "instructrec.models.GenerationModule", "--model.init_args.backbone", "tiny-llama",
          "--data", "instructrec.data.InstructionDataModule", "--data.init_args.predict", str(questions),
          "--data.init_args.cache_dir", str(tmp_path / "cache"), "--ckpt_path", str(checkpoint),
          "--trainer.callbacks+=instructrec.callbacks.JsonlPredictionWriter",
          "--trainer.callbacks.output_dir", str(tmp_path / "predicted"), "--trainer.logger", "false",
          "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root)])
    rows = [json.loads(line) for line in (tmp_path / "predicted" / "predictions.jsonl").read_text().splitlines()]
    assert [(r["id"], r["prompt"], r["prediction"]) for r in rows] == [
        (f"predict-{n}", translation(s), o) for n, ((s, _), o) in enumerate(zip(PAIRS, ours), start=1)]
