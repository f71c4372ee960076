"""The frozen teacher: a transformers model folder or a checkpoint of ours, never trained.

Why a wrapper: whatever it was loaded from, the teacher answers one question, "the outputs for
this batch and task" (:class:`~instructrec.distill.outputs.ModelOutputs`), in eval mode, without
gradients, optionally in lower precision; and it has an identity (a content hash) that keys the
teacher-logits cache.

Sources:

* a folder in ``save_pretrained`` format holding ``AutoModelForSequenceClassification``
  (classification) or ``AutoModelForQuestionAnswering`` (qa): one task. Its ``id2label`` names are
  matched to the task's labels (columns reordered) when they are the same set; otherwise columns
  are taken in order (the counts must agree).
* a Lightning checkpoint (``.ckpt``) of ours. Protocol: ``hyper_parameters`` hold the module's
  ``__init__`` arguments (``save_hyperparameters``) and, when written through ``instructrec fit``
  (LightningCLI subclass mode), its class in ``_class_path``; without one the class is
  :class:`instructrec.models.MultiTaskModule`. The module is rebuilt with ``pretrained=False``
  (the checkpoint has the weights), its ``state_dict`` loaded with ``weights_only=True``, and it
  must have ``encoder`` (a transformers encoder) and ``heads[task](states, attention_mask)``,
  as ``MultiTaskModule`` has. Its ``tasks`` hyper-parameter names the tasks it can teach.

A teacher reads the student's batches. When the student's tokenizer splits text as the teacher's
does but numbers the pieces differently (MPNet's vocabulary is BERT-uncased's shifted by four, with
its own ``<s> </s> <pad> <unk>``), ``load_teacher(..., tokenizer=<the student's backbone>)`` gives
the teacher a :func:`token_id_map` and it translates the ids before it reads them; one token is one
token in both, so hidden states still align position by position. Checked on a probe text when the
map is built; a pair of tokenizers that split text differently is refused. (For sentence pairs BERT
writes ``[CLS] a [SEP] b [SEP]`` where MPNet writes ``<s> a </s></s> b </s>``: the teacher then
reads one separator where it was trained on two.)
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from instructrec import backbones
from instructrec.batch import encoder_inputs
from instructrec.hashing import file_digest
from instructrec.paths import resolve_path
from instructrec.distill.outputs import ModelOutputs
from instructrec.errors import InputError, MissingFileError
from instructrec.models.checkpoints import load_module

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class FrozenTeacher(nn.Module):
    """A teacher model that stays in eval mode with ``requires_grad=False`` and runs under
    ``torch.no_grad()``.

    Attributes:
        model: the wrapped module (a transformers task model, or our LightningModule).
        kind: ``"transformers"`` or ``"checkpoint"``.
        tasks: ``{name: {"type", "labels"}}`` it can teach.
        identity: a content hash of the source (folder files or checkpoint bytes) plus the dtype.
        encoder: its transformers encoder (for initialising a student from its layers).
    """

    def __init__(
        self,
        model: nn.Module,
        kind: str,
        tasks: dict,
        identity: str,
        label_order=None,
        dtype=None,
        token_map: torch.Tensor | None = None,
        input_names: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        # The student's token id -> the teacher's (see the module docstring); not saved: rebuilt from the tokenizers.
        self.register_buffer("token_map", token_map, persistent=False)
        self.input_names = input_names  # the encoder inputs the teacher's tokenizer makes (None: any)
        self.kind = kind
        self.tasks = {name: dict(spec) for name, spec in tasks.items()}
        self.identity = identity
        self.label_order = label_order  # transformers classification: teacher column per task label
        if dtype is not None:
            self.model.to(DTYPES[dtype])
        self.dtype_name = dtype or "float32"
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenTeacher":
        """Always eval: Lightning's ``model.train()`` must not turn the teacher's dropout on."""
        return super().train(False)

    @property
    def encoder(self) -> nn.Module:
        return self.model.base_model if self.kind == "transformers" else self.model.encoder

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @torch.no_grad()
    def forward(self, batch: dict, task: str, hidden_states: bool = False, attentions: bool = False) -> ModelOutputs:
        """The teacher's outputs for ``batch`` (see :mod:`.outputs` for shapes)."""
        if task not in self.tasks:
            raise KeyError(f"the teacher has no task {task!r}; it teaches {sorted(self.tasks)}")
        inputs = encoder_inputs(batch)
        if self.input_names is not None:
            inputs = {key: value for key, value in inputs.items() if key in self.input_names}
        if self.token_map is not None:
            inputs["input_ids"] = self.token_map[inputs["input_ids"]]
        flags = {"output_hidden_states": hidden_states, "output_attentions": attentions}
        if self.kind == "transformers":
            out = self.model(**inputs, **flags)
            if self.tasks[task]["type"] == "qa":
                logits = tuple(_mask_padding(x, inputs.get("attention_mask")) for x in (out.start_logits, out.end_logits))
            else:
                logits = out.logits if self.label_order is None else out.logits[:, self.label_order]
        else:
            out = self.model.encoder(**inputs, **flags)
            logits = self.model.heads[task](out.last_hidden_state, inputs.get("attention_mask"))
        return ModelOutputs(
            logits, out.hidden_states if hidden_states else None, out.attentions if attentions else None
        )


def expect_frozen_teacher(module: nn.Module, teacher: nn.Module) -> None:
    """Call from ``on_fit_start``. Lightning warns at the start of every fit about modules in eval
    mode, and a frozen teacher always is, by design: that line would print on every distillation
    run with nothing for the user to do. It is hidden only when the count it reports is exactly the
    teacher's modules, so any other module left in eval mode still warns."""
    in_eval = sum(1 for part in module.modules() if not part.training)
    if in_eval == sum(1 for _ in teacher.modules()):
        warnings.filterwarnings("ignore", message=re.escape(f"Found {in_eval} module(s) in eval mode at the start of training"))


def load_teacher(
    source: str,
    tasks: dict | None = None,
    dtype: str | None = None,
    attentions: bool = False,
    tokenizer: str | None = None,
) -> FrozenTeacher:
    """A :class:`FrozenTeacher` from a transformers folder or one of our checkpoints.

    Args:
        source: a folder with ``config.json``, or a ``.ckpt`` file.
        tasks: the tasks to teach (``{name: {"type", "labels"}}``); default: the teacher's own.
        dtype: ``float32`` (default), ``bfloat16`` or ``float16`` for the teacher's weights.
        attentions: load eager attention, which can return attention probabilities (needed by
            attention transfer; SDPA cannot).
        tokenizer: the backbone whose tokenizer encodes the batches the teacher reads (the
            student's); when the teacher's own numbers tokens differently, ids are translated
            (:func:`token_id_map`). None: the batches are the teacher's own tokens.
    """
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"teacher dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    path = resolve_path(source)
    if path.is_dir():
        teacher = _from_folder(path, tasks, dtype, attentions)
    elif path.is_file():
        teacher = _from_checkpoint(path, tasks, dtype, attentions)
    else:
        raise MissingFileError(f"teacher {path} is neither a model folder nor a checkpoint file")
    own = _own_tokenizer(teacher, path) if tokenizer is not None else None
    if own is not None:
        teacher.token_map = token_id_map(backbones.load_tokenizer(tokenizer), own)
        if teacher.token_map is not None:
            teacher.input_names = tuple(own.model_input_names)
    return teacher


# Text whose pieces the two tokenizers must agree on before ids are translated: cased words, a
# word split into pieces, punctuation, digits, an accent, Chinese characters.
PROBE_TEXT = "The film's unbelievably tedious, 1,234 résumés later! 电影很好"


def token_id_map(student, teacher) -> torch.Tensor | None:
    """The teacher's id for each of the student tokenizer's ids, or None when they already agree.

    Special tokens map by role (the student's CLS to the teacher's CLS, and so on), every other
    token by its string. A raw text that spells a special token (``[MASK]``) is read as that
    special by the student's tokenizer and so reaches the teacher as its special by role, not as
    the pieces its own tokenizer would make of the string. Raises
    :class:`~instructrec.errors.InputError` when the two split :data:`PROBE_TEXT` into different
    pieces, or when more than 1% of the student's tokens are not in the teacher's vocabulary: their
    ids could not be translated one for one.
    """
    student_vocab, teacher_vocab = student.get_vocab(), teacher.get_vocab()
    roles = ("cls_token", "sep_token", "pad_token", "unk_token", "mask_token", "bos_token", "eos_token")
    special = {
        getattr(student, f"{role}_id"): getattr(teacher, f"{role}_id")
        for role in roles
        if getattr(student, role, None) is not None and getattr(teacher, role, None) is not None
    }
    if student_vocab == teacher_vocab and all(s == t for s, t in special.items()):
        return None
    mapping = torch.full((max(student_vocab.values()) + 1,), teacher.unk_token_id, dtype=torch.long)
    missing = 0
    for token, index in student_vocab.items():
        if token in teacher_vocab:
            mapping[index] = teacher_vocab[token]
        else:
            missing += 1
    for student_id, teacher_id in special.items():
        mapping[student_id] = teacher_id
    if missing > 0.01 * len(student_vocab):
        raise InputError(
            f"the teacher's vocabulary lacks {missing} of the student tokenizer's {len(student_vocab)} tokens: "
            "their ids cannot be translated one for one; distil into a student with the teacher's tokenizer"
        )
    pieces = [tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"] for tokenizer in (student, teacher)]
    if mapping[torch.tensor(pieces[0])].tolist() != pieces[1]:
        raise InputError(
            f"the student's and the teacher's tokenizers split {PROBE_TEXT!r} differently "
            f"({student.convert_ids_to_tokens(pieces[0])} vs {teacher.convert_ids_to_tokens(pieces[1])}): "
            "the teacher cannot read the student's batches; distil into a student with the teacher's tokenizer"
        )
    return mapping


def _own_tokenizer(teacher: FrozenTeacher, path: Path):
    """The tokenizer the teacher was trained with: its checkpoint's backbone, or the folder's own
    tokenizer files (None when the folder has none)."""
    if teacher.kind == "checkpoint":
        backbone = teacher.model.hparams.get("backbone")
        return backbones.load_tokenizer(backbone) if backbone else None
    if not any(path.glob("tokenizer*")) and not (path / "vocab.txt").is_file():
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=False)


def source_identity(path: Path) -> str:
    """A content hash of a folder's files (names and bytes) or of one file's bytes."""
    if path.is_file():
        return f"file:{file_digest(path)[:24]}"
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(file.relative_to(path)).encode() + b"\0" + file_digest(file).encode())
    return f"folder:{digest.hexdigest()[:24]}"


def _from_folder(path: Path, tasks: dict | None, dtype: str | None, attentions: bool) -> FrozenTeacher:
    from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    architectures = " ".join(config.architectures or [])
    kind = "qa" if "QuestionAnswering" in architectures else "classification"
    loader = AutoModelForQuestionAnswering if kind == "qa" else AutoModelForSequenceClassification
    options = {"attn_implementation": "eager"} if attentions else {}
    model = loader.from_pretrained(path, trust_remote_code=False, **options)
    own_labels = [config.id2label[i] for i in range(config.num_labels)] if kind == "classification" else None
    if tasks is None:
        tasks = {kind: {"type": kind, **({"labels": own_labels} if own_labels else {})}}
    if len(tasks) != 1:
        raise ValueError(f"a transformers teacher folder teaches one task; got tasks {sorted(tasks)}")
    (name, spec), = tasks.items()
    if spec["type"] != kind:
        raise ValueError(f"teacher folder {path} is a {kind} model; task {name!r} is {spec['type']}")
    order = _label_order(own_labels, spec.get("labels")) if kind == "classification" else None
    identity = f"{source_identity(path)}:{dtype or 'float32'}"
    return FrozenTeacher(model, "transformers", tasks, identity, order, dtype)


def _label_order(teacher_labels: list[str], labels: list[str] | None) -> list[int] | None:
    """Teacher column for each task label, or None when the columns are already in order."""
    if labels is None or list(labels) == list(teacher_labels):
        return None
    if len(labels) != len(teacher_labels):
        raise ValueError(f"the teacher has {len(teacher_labels)} labels {teacher_labels}; the task has {labels}")
    if set(labels) == set(teacher_labels):
        return [teacher_labels.index(label) for label in labels]
    return None  # generic names (LABEL_0...): the same order is assumed


def _from_checkpoint(path: Path, tasks: dict | None, dtype: str | None, attentions: bool) -> FrozenTeacher:
    model = load_module(path)
    if not (hasattr(model, "encoder") and hasattr(model, "heads")):
        raise TypeError(f"{type(model).__name__} has no `encoder` and `heads`; see instructrec.distill.teacher for the protocol")
    if attentions:
        model.encoder.set_attn_implementation("eager")
    own = dict(getattr(model, "tasks", None) or model.hparams.get("tasks") or {})
    # How the teacher's heads read the tokens is the teacher's, whatever the data says.
    tasks = own if tasks is None else {
        name: {**spec, **{k: v for k, v in own.get(name, {}).items() if k == "pooling"}} for name, spec in tasks.items()
    }
    missing = [name for name in tasks if name not in model.heads]
    if missing:
        raise ValueError(f"the teacher checkpoint {path} has no heads for tasks {missing}; it has {sorted(model.heads)}")
    identity = f"{source_identity(path)}:{dtype or 'float32'}"
    return FrozenTeacher(model, "checkpoint", tasks, identity, None, dtype)


def _mask_padding(logits: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    logits = logits.float()
    if attention_mask is None:
        return logits
    return logits.masked_fill(attention_mask == 0, torch.finfo(logits.dtype).min)
