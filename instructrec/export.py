"""``instructrec export CKPT DIR``: a trained :class:`MultiTaskModule` as files anyone can load.

``DIR`` holds:

* the encoder and its tokenizer in transformers' ``save_pretrained`` format
  (``config.json``, ``model.safetensors``, ``tokenizer.json``...): ``AutoModel.from_pretrained(DIR)``
  and ``AutoTokenizer.from_pretrained(DIR)`` load them, and ``backbone: DIR`` fine-tunes further.
  The encoder has no pooler (our heads read token states), so transformers reports a freshly
  initialised ``pooler`` when it builds one: ignore it, or load with ``add_pooling_layer=False``;
* ``heads.safetensors``: every head's tensors, named ``<task>.weight`` and ``<task>.bias``;
* ``heads.json``: ``{"format": "instructrec-heads", "version": 1, "backbone": ..., "hidden_size":
  ..., "tasks": {task: {"type", "labels", "input", "output", "tensors": {name: shape}}}}``.

A head is ``logits = states @ weight.T + bias`` where ``states`` is, by the entry's ``input``,
``first_token``: the encoder's ``last_hidden_state[:, 0]``, ``mean_tokens``: its mean over the
tokens where ``attention_mask`` is 1 (classification: ``(B, C)`` logits in ``labels`` order;
regression and ranking: ``(B, 1)`` scores), or ``all_tokens``: the whole ``last_hidden_state``
(qa: ``(B, S, 2)``, start and end logits).
"""

from __future__ import annotations

import json
from pathlib import Path


HEADS_FORMAT = "instructrec-heads"
HEADS_VERSION = 1
POOLED_INPUTS = {"first": "first_token", "mean": "mean_tokens"}  # sentence-level heads, by pooling
OUTPUTS = {
    "classification": "logits (batch, labels)",
    "regression": "score (batch, 1)",
    "ranking": "score (batch, 1)",
    "qa": "start and end logits (batch, seq, 2)",
}


def save_encoder(model, output_dir: str | Path) -> Path:
    """Write a module's ``encoder`` and its backbone's tokenizer into ``output_dir`` (transformers'
    ``save_pretrained`` format), so the folder works as any module's ``backbone``; return it."""
    from instructrec import backbones

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(out)
    backbones.load_tokenizer(model.hparams["backbone"]).save_pretrained(out)
    return out


def export_checkpoint(checkpoint: str | Path, output_dir: str | Path) -> Path:
    """Write the checkpoint's encoder, tokenizer and heads into ``output_dir``; return it."""
    from safetensors.torch import save_file

    from instructrec.models.checkpoints import CheckpointError, load_module
    from instructrec.models.multitask import MultiTaskModule

    model = load_module(checkpoint)
    if not isinstance(model, MultiTaskModule):
        raise CheckpointError(f"holds a {type(model).__name__}; export writes MultiTaskModule checkpoints", source=str(checkpoint))
    hparams = model.hparams
    out = save_encoder(model, output_dir)

    tensors, tasks = {}, {}
    for name, head in model.heads.items():
        spec = model.tasks[name]
        reads = "all_tokens" if spec["type"] == "qa" else POOLED_INPUTS[spec.get("pooling", "first")]
        entry = {"type": spec["type"], "input": reads, "output": OUTPUTS[spec["type"]], "tensors": {}}
        if spec["type"] == "classification":
            entry["labels"] = list(spec["labels"])
        for part in ("weight", "bias"):
            tensor = getattr(head.linear, part).detach().contiguous()
            tensors[f"{name}.{part}"] = tensor
            entry["tensors"][f"{name}.{part}"] = list(tensor.shape)
        tasks[name] = entry
    save_file(tensors, str(out / "heads.safetensors"))
    manifest = {
        "format": HEADS_FORMAT,
        "version": HEADS_VERSION,
        "backbone": hparams["backbone"],
        "hidden_size": model.encoder.config.hidden_size,
        "tasks": tasks,
    }
    (out / "heads.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out
