"""Students (from teacher layers, random, pretrained) and frozen teachers (folder, checkpoint)."""

import pytest
import torch

from instructrec import backbones
from instructrec.distill import student as students
from instructrec.distill.teacher import load_teacher
from instructrec.models import MultiTaskModule
from instructrec.models.evaluation import count_parameters

from distill_helpers import LABELS, random_batch, save_classification_teacher


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    return save_classification_teacher(tmp_path_factory.mktemp("teacher") / "tiny6")


def test_student_from_teacher_layers_has_their_weights(teacher_folder):
    teacher = load_teacher(str(teacher_folder))
    encoder = students.build_student_encoder("teacher_layers", "tiny-bert", teacher.encoder, [0, 2, 4])
    assert students.num_layers(encoder) == 3 and encoder.config.num_hidden_layers == 3
    source = teacher.encoder.state_dict()
    target = encoder.state_dict()
    for student_index, teacher_index in enumerate([0, 2, 4]):
        prefix_s, prefix_t = f"encoder.layer.{student_index}.", f"encoder.layer.{teacher_index}."
        names = [k for k in target if k.startswith(prefix_s)]
        assert names
        for name in names:
            assert torch.equal(target[name], source[prefix_t + name[len(prefix_s):]])
    assert torch.equal(target["embeddings.word_embeddings.weight"], source["embeddings.word_embeddings.weight"])
    # Trainable, in train mode, independent of the teacher's tensors.
    assert encoder.training and all(p.requires_grad for p in encoder.parameters())
    assert not any(p.requires_grad for p in teacher.parameters())
    # Parameters: the teacher's minus three layers (and its pooler, which students drop).
    per_layer = count_parameters(teacher.encoder.encoder.layer[0])
    pooler = count_parameters(teacher.encoder.pooler)
    assert count_parameters(encoder) == count_parameters(teacher.encoder) - 3 * per_layer - pooler
    # It runs; its layer map pairs each copied layer with the end of the teacher block it replaces.
    out = encoder(**{k: v for k, v in random_batch().items() if k != "labels"}, output_hidden_states=True)
    assert len(out.hidden_states) == 4
    assert students.selection_layer_map([0, 2, 4], 6) == [[0, 0], [1, 2], [2, 4], [3, 6]]
    assert students.selection_layer_map([1, 2], 4) == [[0, 0], [1, 2], [2, 4]]
    assert students.uniform_layer_map(3, 6) == [[0, 0], [1, 2], [2, 4], [3, 6]]
    assert students.attention_map([[0, 0], [1, 1], [2, 3]]) == [[0, 0], [1, 2]]


def test_bad_layer_choices_are_refused(teacher_folder):
    teacher = load_teacher(str(teacher_folder))
    for layers in ([], [0, 6], [1, 1]):
        with pytest.raises(ValueError, match="distinct indices"):
            students.select_layers(teacher.encoder, layers)
    with pytest.raises(ValueError, match="student_init"):
        students.build_student_encoder("copy", "tiny-bert")


def test_random_and_pretrained_students(tmp_path):
    torch.manual_seed(0)
    random = students.build_student_encoder("random", "tiny-bert", student_num_layers=1)
    assert students.num_layers(random) == 1
    folder = tmp_path / "pretrained"
    backbones.load_encoder("tiny-bert").save_pretrained(folder)
    backbones.load_tokenizer("tiny-bert").save_pretrained(folder)
    pretrained = students.build_student_encoder("pretrained", str(folder))
    saved = backbones.load_encoder(str(folder)).state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in pretrained.state_dict().items())
    full = backbones.load_encoder("tiny-bert")
    assert count_parameters(pretrained) == count_parameters(full)


def test_folder_teacher_is_frozen_and_reorders_labels(teacher_folder):
    teacher = load_teacher(str(teacher_folder), dtype="bfloat16")
    teacher.train()  # what Lightning does: the teacher must stay in eval mode
    assert not teacher.training and not teacher.model.training
    assert all(not p.requires_grad and p.dtype == torch.bfloat16 for p in teacher.parameters())
    assert teacher.tasks == {"classification": {"type": "classification", "labels": LABELS}}
    batch = random_batch()
    x = torch.ones(1, requires_grad=True)
    out = teacher(batch, "classification", hidden_states=True)
    assert out.logits.shape == (4, 2) and not out.logits.requires_grad and len(out.hidden_states) == 7
    assert x.requires_grad  # grad mode outside is untouched
    swapped = load_teacher(str(teacher_folder), tasks={"s": {"type": "classification", "labels": LABELS[::-1]}})
    plain = load_teacher(str(teacher_folder))
    assert torch.allclose(swapped(batch, "s").logits, plain(batch, "classification").logits.flip(-1))
    with pytest.raises(ValueError, match="qa"):
        load_teacher(str(teacher_folder), tasks={"q": {"type": "qa"}})


def test_teacher_identity_follows_the_content(tmp_path, teacher_folder):
    other = save_classification_teacher(tmp_path / "other", seed=1)
    assert load_teacher(str(teacher_folder)).identity != load_teacher(str(other)).identity
    assert load_teacher(str(teacher_folder)).identity == load_teacher(str(teacher_folder)).identity
    assert load_teacher(str(teacher_folder)).identity != load_teacher(str(teacher_folder), dtype="bfloat16").identity


def test_checkpoint_teacher_uses_the_stored_class_path(tmp_path):
    """Protocol: hyper_parameters (+ LightningCLI's `_class_path`) rebuild the module."""
    tasks = {"sent": {"type": "classification", "labels": LABELS}}
    torch.manual_seed(0)
    model = MultiTaskModule(tasks=tasks, backbone="tiny-bert").eval()
    hparams = {**dict(model.hparams), "_class_path": "instructrec.models.MultiTaskModule",
               "_instantiator": "lightning.pytorch.cli.instantiate_module"}  # as LightningCLI writes them
    path = tmp_path / "teacher.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams}, path)
    teacher = load_teacher(str(path))
    assert teacher.kind == "checkpoint"
    assert teacher.tasks == {name: {**spec, "pooling": "first"} for name, spec in tasks.items()}  # how its heads read tokens
    batch = random_batch()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        expected = model(**inputs, task="sent")
    assert torch.allclose(teacher(batch, "sent").logits, expected, atol=1e-6)
    with pytest.raises(ValueError, match="no heads"):
        load_teacher(str(path), tasks={"other": {"type": "classification", "labels": LABELS}})
