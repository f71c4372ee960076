"""``instructrec export CKPT DIR``: a trained model of any family as files anyone can load, with a
model card (``README.md``: family, backbone, tasks and labels, recorded metrics, the run's config).

* :class:`~instructrec.models.QAReasoningModule` (an extractive reader): a transformers
  ``AutoModelForQuestionAnswering`` folder; ``transformers.pipeline("question-answering",
  model=DIR)`` answers with it;
* :class:`~instructrec.models.GenerationModule` and a distilled causal LM
  (:class:`~instructrec.distill.GenerationDistillationModule`'s student): a transformers
  ``AutoModelForCausalLM`` folder with its tokenizer (chat template included) and generation
  config, LoRA adapters merged into the weights; ``generate`` on it gives the module's answers;
* :class:`~instructrec.recommendation.two_tower.TwoTowerModule`: its encoder folder (both towers
  share it), as the multi-task format's encoder without heads;
* :class:`~instructrec.models.MultiTaskModule` and a distilled student
  (:class:`~instructrec.distill.DistillationModule`'s ``student``; the teacher stays behind): the
  encoder folder plus the heads, below.

The multi-task format: ``DIR`` holds

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

from instructrec.errors import InputError


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
    return write_pretrained(model.encoder, model.hparams["backbone"], output_dir)


def write_pretrained(model, backbone: str, output_dir: str | Path) -> Path:
    """A transformers model and the backbone's tokenizer, ``save_pretrained`` into ``output_dir``."""
    from instructrec import backbones

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    backbones.load_tokenizer(backbone).save_pretrained(out)
    return out


def export_checkpoint(checkpoint: str | Path, output_dir: str | Path) -> Path:
    """Write a checkpoint of any family into ``output_dir`` (see the module docstring for what
    each family becomes), with a model card; return the folder."""
    from instructrec.models.checkpoints import CheckpointError, module_from_checkpoint, read_checkpoint

    saved = read_checkpoint(checkpoint)
    model = module_from_checkpoint(saved, str(checkpoint))
    family = type(model).__name__
    writers = {"MultiTaskModule": _export_heads, "DistillationModule": _export_student, "QAReasoningModule": _export_reader,
               "GenerationModule": _export_causal_lm, "GenerationDistillationModule": _export_causal_lm,
               "TwoTowerModule": _export_two_tower}
    if family not in writers:  # pragma: no cover - load_module only builds registered families
        raise CheckpointError(f"holds a {family}, which export does not know", source=str(checkpoint))
    out = Path(output_dir)
    summary = writers[family](model, out)
    write_model_card(out, family, model.hparams.get("backbone"), summary, Path(checkpoint), saved)
    return out


def _export_heads(model, out: Path) -> dict:
    """A multi-task model: the encoder folder plus ``heads.safetensors`` and ``heads.json``."""
    return _write_encoder_and_heads(model.encoder, model.heads, model.tasks, model.hparams["backbone"], out)


def _export_student(model, out: Path) -> dict:
    """A distilled student: the same format as a multi-task model (its encoder and heads); the
    teacher stays behind."""
    return _write_encoder_and_heads(model.student.encoder, model.student.heads, model.tasks, model.hparams["backbone"], out)


def _export_reader(model, out: Path) -> dict:
    """An extractive QA reader: a transformers ``AutoModelForQuestionAnswering`` folder (the
    encoder as its base model, the span head as ``qa_outputs``), so that
    ``pipeline("question-answering", model=DIR)`` answers with it."""
    import copy

    from transformers import AutoModelForQuestionAnswering

    if model.closed_answers:
        raise InputError(
            f"this reader also chooses closed answers ({', '.join(model.closed_answers)}), which "
            "AutoModelForQuestionAnswering has no head for: an export would answer spans only",
            hint="use the checkpoint itself (`instructrec predict`)",
        )
    config = copy.deepcopy(model.encoder.config)
    config.num_labels = 2
    reader = AutoModelForQuestionAnswering.from_config(config)
    missing, unexpected = reader.base_model.load_state_dict(model.encoder.state_dict(), strict=False)
    if unexpected or [name for name in missing if "pooler" not in name]:
        raise RuntimeError(f"the reader's encoder does not fit {type(reader).__name__}: missing {missing}, unexpected {unexpected}")
    reader.qa_outputs.load_state_dict(model.head.linear.state_dict())  # Linear(hidden, 2): start, end as SpanHead's
    write_pretrained(reader, model.hparams["backbone"], out)
    return {"tasks": {"qa": {"type": "qa", "output": OUTPUTS["qa"]}}, "loads_with": "AutoModelForQuestionAnswering",
            "null_threshold": float(model.null_threshold)}


def _export_causal_lm(model, out: Path) -> dict:
    """A generation model: its language model (adapters merged) and tokenizer, save_pretrained."""
    write_pretrained(model.merged_model(), model.hparams["backbone"], out)
    tasks = {name: {"type": spec["type"], "output": "generated text"} for name, spec in model.tasks.items()}
    return {"tasks": tasks, "loads_with": "AutoModelForCausalLM (prompts through the tokenizer's chat template)",
            "decoding": dict(model.hparams["decoding"])}


def _export_two_tower(model, out: Path) -> dict:
    """A two-tower recommender: its one encoder folder (both towers share it); an embedding is the
    unit-length masked mean of ``last_hidden_state``, a user's input the history text of
    :func:`instructrec.recommendation.two_tower.history_text`."""
    from instructrec.recommendation.two_tower import history_text

    save_encoder(model, out)
    return {"tasks": {"next_item": {"type": "two_tower", "output": "cosine of user and item embeddings"}},
            "loads_with": "AutoModel (embedding: normalised mean of last_hidden_state over attention_mask)",
            "user_text_example": history_text(["Heat (1995; Action, Crime, Thriller)", "Babe (1995; Comedy)"]),
            "temperature": float(model.hparams["temperature"])}


def _write_encoder_and_heads(encoder, heads, tasks: dict, backbone: str, output_dir: Path) -> dict:
    from safetensors.torch import save_file

    out = write_pretrained(encoder, backbone, output_dir)
    tensors, described = {}, {}
    for name, head in heads.items():
        spec = tasks[name]
        reads = "all_tokens" if spec["type"] == "qa" else POOLED_INPUTS[spec.get("pooling", "first")]
        entry = {"type": spec["type"], "input": reads, "output": OUTPUTS[spec["type"]], "tensors": {}}
        if spec["type"] == "classification":
            entry["labels"] = list(spec["labels"])
        for part in ("weight", "bias"):
            tensor = getattr(head.linear, part).detach().contiguous()
            tensors[f"{name}.{part}"] = tensor
            entry["tensors"][f"{name}.{part}"] = list(tensor.shape)
        described[name] = entry
    save_file(tensors, str(out / "heads.safetensors"))
    manifest = {
        "format": HEADS_FORMAT,
        "version": HEADS_VERSION,
        "backbone": backbone,
        "hidden_size": encoder.config.hidden_size,
        "tasks": described,
    }
    (out / "heads.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"tasks": described, "loads_with": "AutoModel + heads.safetensors"}


def write_model_card(out: Path, family: str, backbone: str | None, summary: dict, checkpoint: Path, saved: dict) -> Path:
    """``README.md`` for the folder: what it is, how to load it, its tasks and labels, the
    metrics the checkpoint recorded, and the config of the run that trained it (LightningCLI saves
    ``config.yaml`` in the run folder, a few levels above its checkpoints)."""
    scores = {
        key: float(state["best_model_score"])
        for key, state in (saved.get("callbacks") or {}).items()
        if isinstance(state, dict) and state.get("best_model_score") is not None
    }
    config = next((folder / "config.yaml" for folder in checkpoint.resolve().parents[:4] if (folder / "config.yaml").is_file()), None)
    lines = [
        f"# {out.name}",
        "",
        f"An instructrec `{family}` exported from `{checkpoint.name}` (step {saved.get('global_step', '?')}, "
        f"epoch {saved.get('epoch', '?')}); backbone `{backbone}`.",
        "",
        f"Loads with: {summary['loads_with']} (see `instructrec.export`).",
        "",
        "| task | type | labels |",
        "|---|---|---|",
        *[f"| {name} | {entry['type']} | {', '.join(entry.get('labels', [])) or '-'} |" for name, entry in summary["tasks"].items()],
        "",
    ]
    if "decoding" in summary:
        lines += ["Decoding the run evaluated with: " + ", ".join(f"`{k}={v}`" for k, v in summary["decoding"].items()) + ".", ""]
    if "null_threshold" in summary:
        lines += [f"SQuAD 2.0 null threshold tuned on validation: {summary['null_threshold']:.4f}.", ""]
    if scores:
        lines += ["Recorded by the run's checkpoint callbacks (the monitored metric's best value):", ""]
        lines += [f"- `{key}`: {value:.4f}" for key, value in scores.items()] + [""]
    if config is not None:
        lines += ["Trained with `instructrec fit --config config.yaml`, this config (saved by the run):", "",
                  "```yaml", config.read_text(encoding="utf-8").rstrip(), "```", ""]
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
