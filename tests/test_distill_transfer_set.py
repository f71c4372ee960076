"""A transfer set: unlabelled text the teacher labels, added to the student's gold examples."""

import pytest
import torch

from instructrec.batch import IGNORE_LABEL
from instructrec.distill import teacher_cache
from instructrec.distill.data import TeacherLogitsDataModule
from instructrec.distill.module import DistillationModule
from instructrec.errors import InputError

from distill_helpers import save_classification_teacher
from helpers import write_classification

LABELS = ["positive", "negative"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return save_classification_teacher(tmp_path_factory.mktemp("teacher") / "t", seed=0)


@pytest.fixture
def files(tmp_path):
    gold = write_classification(tmp_path / "gold.jsonl", [(f"gold review {i}", LABELS[i % 2]) for i in range(6)])
    # Labelled like a training file: the answers must be dropped, not used.
    more = write_classification(tmp_path / "more.jsonl", [(f"other review {i}", LABELS[0]) for i in range(30)])
    return gold, more


def data_module(tmp_path, teacher, gold, transfer, **kwargs):
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    return TeacherLogitsDataModule(
        train=str(gold), val_fraction=0.0, tokenizer="tiny-bert", batch_size=8, max_length=48,
        teacher=str(teacher), transfer_set=transfer, **kwargs,
    )


def test_transfer_examples_follow_the_gold_ones_without_labels_and_with_teacher_logits(tmp_path, teacher, files):
    gold, more = files
    dm = data_module(tmp_path, teacher, gold, [str(more), str(gold)])
    dm.setup("fit")
    train = dm.datasets["train"]
    # The gold file given again as transfer text stays gold only: 6 gold rows, then the 30 others.
    assert train["example_id"] == [f"r{i}" for i in range(6)] + [f"transfer:r{i}" for i in range(30)]
    assert train["labels"] == [0, 1, 0, 1, 0, 1] + [IGNORE_LABEL] * 30
    logits = torch.tensor(train["teacher_logits"])
    assert logits.shape == (36, 2) and torch.isfinite(logits).all()


def test_the_transfer_set_is_chosen_by_its_own_seed_and_is_part_of_the_cache_key(tmp_path, teacher, files):
    gold, more = files

    def transfer_ids(**kwargs):
        dm = data_module(tmp_path, teacher, gold, str(more), transfer_set_size=10, **kwargs)
        dm.setup("fit")
        return [i for i in dm.datasets["train"]["example_id"] if i.startswith("transfer:")]

    chosen = transfer_ids()
    assert len(chosen) == 10
    assert transfer_ids(seed=5) == chosen  # the gold subset's seed leaves the transfer set alone
    other = transfer_ids(transfer_set_seed=1)
    assert len(other) == 10 and other != chosen


def test_runs_with_other_gold_subsets_share_the_transfer_sets_teacher_logits(tmp_path, teacher, files, monkeypatch):
    gold, more = files
    first = data_module(tmp_path, teacher, gold, str(more), max_examples={"train": 4})
    first.setup("fit")
    labelled = []
    real = teacher_cache.run_teacher

    def counting(teacher_, dataset, *args, **kwargs):
        labelled.append(len(dataset))
        return real(teacher_, dataset, *args, **kwargs)

    monkeypatch.setattr(teacher_cache, "run_teacher", counting)
    other = data_module(tmp_path, teacher, gold, str(more), max_examples={"train": 4}, seed=3)
    other.setup("fit")
    train = other.datasets["train"]
    assert train["example_id"][:4] != first.datasets["train"]["example_id"][:4]  # another gold subset...
    assert labelled == [4]  # ...labelled by the teacher; the 30 transfer rows come from the cache
    assert other.teacher_folders["transfer"] == first.teacher_folders["transfer"]
    assert train["teacher_logits"][4:] == first.datasets["train"]["teacher_logits"][4:]


def test_the_hard_loss_ignores_transfer_rows_and_the_soft_loss_learns_from_them(tmp_path, teacher, files):
    gold, more = files
    dm = data_module(tmp_path, teacher, gold, str(more))
    dm.setup("fit")
    dataset, collate = dm.loader_inputs("train")
    batch = collate([dataset[i] for i in range(6, 14)])  # transfer rows only
    module = DistillationModule(teacher=str(teacher), tasks=dm.tasks, student_layers=[0, 2]).eval()
    weights = {"soft": 1.0, "hard": 1.0, "hidden": 0.0, "attention": 0.0}
    with torch.no_grad():
        parts = module.losses(batch, module.student(batch, dm.name), None, weights, 2.0)
    assert float(parts["hard"]) == 0.0 and float(parts["soft"]) > 0.0


def test_a_transfer_set_needs_a_teacher_and_a_positive_size(tmp_path, teacher, files):
    gold, more = files
    with pytest.raises(InputError, match="transfer_set needs a teacher"):
        TeacherLogitsDataModule(train=str(gold), tokenizer="tiny-bert", transfer_set=str(more))
    with pytest.raises(InputError, match="transfer_set_size must be positive, got 0"):
        data_module(tmp_path, teacher, gold, str(more), transfer_set_size=0)
    with pytest.raises(InputError, match="add 'train' to teacher_splits"):
        data_module(tmp_path, teacher, gold, str(more), teacher_splits=["val"])
