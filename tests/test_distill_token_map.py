"""A teacher reading a student's tokens when the two number the same pieces differently
(all-mpnet-base-v2 teaching a MiniLM student): ``token_id_map`` and ``FrozenTeacher``."""

import string

import pytest
import torch
from hypothesis import given, settings, strategies as st

from instructrec import backbones
from instructrec.distill.teacher import FrozenTeacher, load_teacher, token_id_map
from instructrec.errors import InputError
from instructrec.models import MultiTaskModule

from distill_helpers import LABELS, random_batch


def mpnet_like_tokenizer(tokens, lowercase: bool = True):
    """A WordPiece tokenizer over ``tokens`` numbered as MPNet numbers BERT's vocabulary: its own
    ``<s> <pad> </s> <unk>`` first (so every BERT id shifts by four), ``<mask>`` last, and
    ``<s> A </s>`` around a text."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(dict.fromkeys(["<s>", "<pad>", "</s>", "<unk>", *tokens, "<mask>"]))}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase, handle_chinese_chars=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        cls_token="<s>", sep_token="</s>", mask_token="<mask>", model_input_names=["input_ids", "attention_mask"],
    )


@pytest.fixture(scope="module")
def pair():
    student = backbones.load_tokenizer("tiny-bert")
    return student, mpnet_like_tokenizer(backbones._tiny_vocab())


# Texts that spell a special token ("[MASK]", "<s>") are left out: each tokenizer reads its own
# specials' spellings as specials, which no id map can agree with (token_id_map's docstring); CI's
# hypothesis run drew "[MASK]" once.
SPECIAL_SPELLINGS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>", "<pad>", "<unk>", "<mask>")
TEXT = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " 电影，", max_size=40).filter(
    lambda text: not any(special in text for special in SPECIAL_SPELLINGS))


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(TEXT, min_size=1, max_size=3))
def test_translated_ids_are_the_teachers_own_encoding(pair, texts):
    student, teacher = pair
    mapping = token_id_map(student, teacher)
    ours = student(texts, padding="max_length", max_length=48, truncation=True, return_tensors="pt")
    theirs = teacher(texts, padding="max_length", max_length=48, truncation=True, return_tensors="pt")
    assert torch.equal(mapping[ours["input_ids"]], theirs["input_ids"])  # specials by role, [UNK] -> <unk>, [PAD] -> <pad>
    assert torch.equal(ours["attention_mask"], theirs["attention_mask"])


def test_the_same_tokenizer_needs_no_map(pair, tmp_path):
    student, _ = pair
    assert token_id_map(student, backbones.load_tokenizer("tiny-bert")) is None
    model = MultiTaskModule(tasks={"sent": {"type": "classification", "labels": LABELS}}, backbone="tiny-bert")
    path = tmp_path / "teacher.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    teacher = load_teacher(str(path), tokenizer="tiny-bert")
    assert teacher.token_map is None and teacher.input_names is None


def test_tokenizers_that_split_differently_are_refused(pair):
    student, _ = pair
    cased = mpnet_like_tokenizer(backbones._tiny_vocab(), lowercase=False)
    with pytest.raises(InputError, match="split .* differently"):
        token_id_map(student, cased)
    half = backbones._tiny_vocab()[: len(backbones._tiny_vocab()) // 2]
    with pytest.raises(InputError, match=r"lacks \d+ of the student tokenizer's"):
        token_id_map(student, mpnet_like_tokenizer(half))


def test_teacher_reads_translated_ids_as_its_own():
    """The teacher sees ``token_map[ids]`` and only its tokenizer's inputs (no token_type_ids)."""
    torch.manual_seed(0)
    model = MultiTaskModule(tasks={"sent": {"type": "classification", "labels": LABELS}}, backbone="tiny-bert").eval()
    vocab_size = model.encoder.config.vocab_size
    to_teacher = torch.randperm(vocab_size)
    teacher = FrozenTeacher(
        model, "checkpoint", model.tasks, "test", token_map=to_teacher, input_names=("input_ids", "attention_mask")
    )
    batch = random_batch()
    own_ids = batch["input_ids"]
    student_ids = torch.argsort(to_teacher)[own_ids]  # the student's numbering of the same tokens
    student_batch = {**batch, "input_ids": student_ids, "token_type_ids": torch.ones_like(own_ids)}
    with torch.no_grad():
        expected = model(input_ids=own_ids, attention_mask=batch["attention_mask"], task="sent")
    assert torch.allclose(teacher(student_batch, "sent").logits, expected, atol=1e-6)


def test_minilm_reads_as_mpnet():
    if not (backbones.is_available("minilm-l6") and backbones.is_available("mpnet-base")):
        pytest.skip("needs the MiniLM-L6 and the five all-mpnet-base-v2 packages (see ../shared/MODELS.md)")
    student, teacher = backbones.load_tokenizer("minilm-l6"), backbones.load_tokenizer("mpnet-base")
    mapping = token_id_map(student, teacher)
    text = ["A gripping, unbelievably tedious film.", "it 's a charming and often affecting journey ."]
    ours = student(text, padding=True, return_tensors="pt")
    theirs = teacher(text, padding=True, return_tensors="pt")
    assert torch.equal(mapping[ours["input_ids"]], theirs["input_ids"])
    assert mapping[1037].item() == 1037 + 4  # "a": BERT's id shifted by four
