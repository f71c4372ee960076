"""The student: a (smaller) encoder plus one head per task, and how it starts.

Initialisations (``student_init``):

* ``teacher_layers`` (DistilBERT, Sanh et al. 2019): a copy of the teacher's encoder keeping its
  embeddings and the chosen layers (e.g. ``[0, 2, 4]`` of 6), weights equal to the teacher's;
* ``pretrained``: another pretrained backbone (``instructrec.backbones`` name or folder);
* ``random``: the backbone's architecture with fresh weights, optionally fewer layers.

The heads are :mod:`instructrec.models.heads`, the same as :class:`MultiTaskModule`'s, and the
attribute names (``encoder``, ``heads``) are the same, so a student's weights read like a
``MultiTaskModule``'s under the ``student.`` prefix.

Layer maps pair student and teacher layers for hidden-state and attention transfer (see
:mod:`.losses` for the indexing: ``hidden_states`` has the embeddings at 0).
"""

from __future__ import annotations

import copy

from torch import nn

from instructrec import backbones
from instructrec.batch import encoder_inputs
from instructrec.distill.outputs import ModelOutputs
from instructrec.models.heads import build_head

INITS = ("teacher_layers", "pretrained", "random")


class Student(nn.Module):
    """An encoder and a head per task.

    Args:
        encoder: a transformers encoder (``AutoModel``), pooler removed.
        tasks: ``{name: {"type", "labels"}}``.
        dropout: dropout before each head.
    """

    def __init__(self, encoder: nn.Module, tasks: dict, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.heads = nn.ModuleDict({name: build_head(spec, hidden, dropout) for name, spec in tasks.items()})

    def forward(self, batch: dict, task: str, hidden_states: bool = False, attentions: bool = False) -> ModelOutputs:
        inputs = encoder_inputs(batch)
        out = self.encoder(**inputs, output_hidden_states=hidden_states, output_attentions=attentions)
        logits = self.heads[task](out.last_hidden_state, inputs.get("attention_mask"))
        return ModelOutputs(logits, out.hidden_states if hidden_states else None, out.attentions if attentions else None)


def layer_list(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's transformer layers (BERT/RoBERTa/MPNet/ELECTRA ``encoder.layer``, DistilBERT
    ``transformer.layer``)."""
    for path in ("encoder.layer", "transformer.layer", "layers"):
        module = encoder
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList):
            return module
    raise TypeError(f"cannot find the transformer layers of {type(encoder).__name__}")


def num_layers(encoder: nn.Module) -> int:
    return len(layer_list(encoder))


def select_layers(encoder: nn.Module, layers: list[int]) -> nn.Module:
    """A deep copy of ``encoder`` keeping its embeddings and the given layers, in that order."""
    available = num_layers(encoder)
    if not layers or any(not 0 <= i < available for i in layers) or len(set(layers)) != len(layers):
        raise ValueError(f"student layers must be distinct indices in [0, {available}), got {layers}")
    student = copy.deepcopy(encoder)
    kept = nn.ModuleList(copy.deepcopy(layer_list(encoder)[i]) for i in layers)
    _set_layers(student, kept)
    return student


def _set_layers(encoder: nn.Module, layers: nn.ModuleList) -> None:
    for path in ("encoder.layer", "transformer.layer", "layers"):
        *parents, last = path.split(".")
        module = encoder
        for part in parents:
            module = getattr(module, part, None)
        if isinstance(getattr(module, last, None), nn.ModuleList):
            setattr(module, last, layers)
            break
    for attribute in ("num_hidden_layers", "n_layers"):
        if hasattr(encoder.config, attribute):
            setattr(encoder.config, attribute, len(layers))
    for index, layer in enumerate(layers):  # attention modules that know their position
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index


def build_student_encoder(
    init: str,
    backbone: str,
    teacher_encoder: nn.Module | None = None,
    layers: list[int] | None = None,
    student_num_layers: int | None = None,
) -> nn.Module:
    """The student's encoder, in train mode, without a pooler.

    Args:
        init: ``teacher_layers``, ``pretrained`` or ``random`` (see the module docstring).
        backbone: the student's backbone name (``pretrained``/``random``).
        teacher_encoder: the teacher's encoder (``teacher_layers``).
        layers: teacher layer indices to keep (``teacher_layers``; default every other layer).
        student_num_layers: keep only the first this many layers (``random``/``pretrained``).
    """
    if init not in INITS:
        raise ValueError(f"student_init must be one of {INITS}, got {init!r}")
    if init == "teacher_layers":
        if teacher_encoder is None:
            raise ValueError("student_init 'teacher_layers' needs the teacher's encoder")
        layers = list(layers) if layers is not None else default_layers(num_layers(teacher_encoder))
        encoder = select_layers(teacher_encoder, layers)
    else:
        encoder = backbones.load_encoder(backbone, pretrained=init == "pretrained")
        if student_num_layers is not None:
            encoder = select_layers(encoder, list(range(student_num_layers)))
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    for parameter in encoder.parameters():
        parameter.requires_grad_(True)
    return encoder.float().train()


def default_layers(teacher_layers: int) -> list[int]:
    """Every other teacher layer, starting at 0 (DistilBERT's choice): 6 -> [0, 2, 4]."""
    return list(range(0, teacher_layers, 2))


def selection_layer_map(layers: list[int], teacher_layers: int) -> list[list[int]]:
    """Hidden-state map for a student built from teacher ``layers`` (``hidden_states`` indices):
    embeddings to embeddings, and student layer ``i`` to the teacher's output at the end of the
    block it stands for, i.e. just before the next copied layer (the last: the teacher's output).

    Why not the layer it was copied from: student layer ``i`` replaces teacher layers
    ``layers[i] .. layers[i+1] - 1``, and its output feeds what the teacher's next block read; the
    last one's output is what the (copied) head reads, which the teacher computes in its last layer.
    """
    ends = [*layers[1:], teacher_layers]
    return [[0, 0]] + [[i + 1, end] for i, end in enumerate(ends)]


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[list[int]]:
    """TinyBERT's ``g(m) = m * N / M`` over ``hidden_states`` indices (0 = embeddings)."""
    return [[m, (m * teacher_layers) // student_layers] for m in range(student_layers + 1)]


def attention_map(hidden_map: list[list[int]]) -> list[list[int]]:
    """The attention-layer pairs of a hidden-state map: layer outputs ``i`` come from attention
    layer ``i - 1``; the embeddings pair is dropped."""
    return [[s - 1, t - 1] for s, t in hidden_map if s > 0 and t > 0]


