"""Distillation for generation on the tiny Llama: the student's layers, word-level KD, the
sequence-level KD cache (reuse and staleness), and a fit -> test -> export run."""

from __future__ import annotations

import json

import pytest
import torch

from instructrec.distill.generation import GenerationDistillationModule, select_decoder_layers
from instructrec.distill.sequence_kd import SequenceKDDataModule
from instructrec.models import GenerationModule
from instructrec.models.generation import DecodingOptions
from test_generation import PAIRS, TASKS, sharpened, translation, write_translations


def save_teacher(path, module: GenerationModule):
    """A checkpoint as `instructrec fit` writes it (the hyper-parameters name the class)."""
    hparams = {**dict(module.hparams), "_class_path": "instructrec.models.GenerationModule"}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams}, path)
    return path


@pytest.fixture
def teacher(tmp_path):
    torch.manual_seed(0)
    module = sharpened(GenerationModule(TASKS, decoding=DecodingOptions(max_new_tokens=8)))
    return module, save_teacher(tmp_path / "teacher.ckpt", module)


def test_the_student_keeps_the_chosen_layers_renumbered_for_the_cache(teacher):
    module, _ = teacher
    student = select_decoder_layers(module.model, [1])
    assert student.config.num_hidden_layers == 1 and module.model.config.num_hidden_layers == 2
    kept, source = student.get_decoder().layers[0], module.model.get_decoder().layers[1]
    assert kept.self_attn.layer_idx == 0
    for (name, a), (_, b) in zip(kept.state_dict().items(), source.state_dict().items()):
        assert torch.equal(a, b), name
    ids = torch.randint(3, 200, (2, 9))
    out = student.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False, pad_token_id=2)
    assert out.shape == (2, 13)
    with pytest.raises(ValueError, match="increasing indices"):
        select_decoder_layers(module.model, [1, 0])


def test_word_level_kd_is_zero_against_itself_and_hard_is_the_lm_loss(teacher, tmp_path):
    module, path = teacher
    distiller = GenerationDistillationModule(str(path), tasks=TASKS, student_layers=[0, 1], soft_weight=1.0, hard_weight=1.0)
    data = SequenceKDDataModule(train=str(write_translations(tmp_path / "t.jsonl")), tokenizer="tiny-llama",
                                cache_dir=str(tmp_path / "cache"))
    batch = data.batch_from_texts([translation(s, t) for s, t in PAIRS])
    distiller.eval()
    parts = distiller.distillation_losses(batch)
    assert float(parts["soft"]) == pytest.approx(0.0, abs=1e-6)
    assert float(parts["hard"]) == pytest.approx(float(module.lm_loss(batch)), rel=1e-5)
    half = GenerationDistillationModule(str(path), tasks=TASKS).eval()
    assert half.hparams.student_layers == [0]
    assert float(half.distillation_losses(batch)["soft"]) > 0.01


def test_sequence_kd_answers_are_the_teachers_generated_once_and_regenerated_for_a_new_teacher(teacher, tmp_path):
    module, path = teacher
    train = str(write_translations(tmp_path / "train.jsonl"))
    options = dict(train=train, tokenizer="tiny-llama", cache_dir=str(tmp_path / "cache"), val_fraction=0.0,
                   teacher=str(path), teacher_decoding={"max_new_tokens": 6, "num_beams": 2})
    first = SequenceKDDataModule(**options)
    first.setup("fit")
    assert first.generated_by_teacher == len(PAIRS)
    batch = first.batch_from_texts([translation(s) for s, _ in PAIRS])
    expected = module.eval().generate(batch["prompt_ids"], batch["prompt_mask"], DecodingOptions(max_new_tokens=6, num_beams=2))
    answers = {e.id: e.instruction.answer for e in first.load_split("train").examples}
    generated = [answers[f"train-{n}"] for n in range(1, len(PAIRS) + 1)]
    assert generated == [text if text else ref for text, (_, ref) in zip(expected, PAIRS)]

    again = SequenceKDDataModule(**options)
    again.setup("fit")
    again.load_split("train")  # past the encoded-data cache too: the sequences come from their file
    assert again.generated_by_teacher == 0

    with torch.no_grad():
        module.model.lm_head.weight.mul_(-1.0)
    save_teacher(path, module)
    renewed = SequenceKDDataModule(**options)
    renewed.setup("fit")
    assert renewed.generated_by_teacher == len(PAIRS)
    assert len(list((tmp_path / "cache").glob("teacher-sequences-*.jsonl"))) == 2


def test_a_distilled_student_fits_tests_against_its_teacher_and_exports(teacher, tmp_path):
    from transformers import AutoModelForCausalLM

    from instructrec.cli import main
    from instructrec.export import export_checkpoint

    _, path = teacher
    train = write_translations(tmp_path / "train.jsonl", PAIRS * 3)
    val = write_translations(tmp_path / "val.jsonl")
    root = tmp_path / "run"
    common = ["--model", "instructrec.distill.GenerationDistillationModule", "--model.init_args.teacher", str(path),
              "--model.init_args.backbone", "tiny-llama", "--model.init_args.decoding.max_new_tokens", "5",
              "--data", "instructrec.distill.SequenceKDDataModule", "--data.init_args.train", str(train),
              "--data.init_args.val", str(val), "--data.init_args.test", str(val), "--data.init_args.batch_size", "4",
              "--data.init_args.cache_dir", str(tmp_path / "cache"), "--trainer.logger", "false",
              "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root)]
    main(["fit", *common, "--trainer.max_steps", "3", "--trainer.num_sanity_val_steps", "0", "--test_after_fit", "true"])
    report = json.loads((root / "distillation_report.json").read_text())
    assert report["student_layers"] == 1 and report["teacher_layers"] == 2
    assert report["student_params"] < report["teacher_params"]
    assert report["student_tokens_per_s"] > 0 and report["teacher_tokens_per_s"] > 0
    assert {"translation/bleu", "teacher/translation/bleu", "translation/chrf_retention"} <= set(report)
    checkpoint = next((root / "checkpoints").glob("*.ckpt"))
    saved = torch.load(checkpoint, weights_only=True)
    assert not any(k.startswith("teacher.") for k in saved["state_dict"])
    out = export_checkpoint(checkpoint, tmp_path / "export")
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 1
