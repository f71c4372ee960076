"""``GenerationModule``: an instruction-tuned causal language model for translation, generative QA,
free generation (and classification by generating the option).

A plain LightningModule over generation batches (:mod:`instructrec.data.generative`): the loss is
the language model's cross-entropy on the answer tokens only (the prompt's labels are ignored), and
evaluation generates each prompt's answer in batches (left-padded prompts, the KV cache) and scores
it with the task type's metrics (:mod:`.text_metrics`), logged as ``val/<task>/<metric>`` with
``val/score`` the mean of the tasks' main metrics. Every evaluation writes its generations beside
their references to ``<default_root_dir>/generations/<stage>[-step<N>]-<task>.jsonl``.

LoRA (``lora``): the backbone is wrapped by ``peft`` and only the adapters train; ``instructrec
export`` merges them into the weights. Mixed precision, devices and checkpointing are the Trainer's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
import torch

from instructrec import backbones
from instructrec.batch import IGNORE_LABEL, PROMPT_INPUTS
from instructrec.models.evaluation import TaskMetrics, log_stage_metrics, task_of
from instructrec.models.optim import adamw_with_warmup
from instructrec.models.text_metrics import GeneratedTask


@dataclass
class DecodingOptions:
    """How answers are generated (transformers' ``generate``).

    Args:
        max_new_tokens: at most this many tokens per answer.
        num_beams: beam search width (1: greedy, or sampling with ``do_sample``).
        do_sample: sample instead of searching; ``temperature``, ``top_p``, ``top_k`` shape it.
        temperature: sampling temperature.
        top_p: nucleus sampling's probability mass.
        top_k: sample among the ``top_k`` likeliest tokens (0: all).
        stop_strings: generation stops at any of these, and the answer is cut before it (the
            end-of-sequence token always stops it).
    """

    max_new_tokens: int = 64
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    stop_strings: list[str] = field(default_factory=list)

    def generate_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams, "do_sample": self.do_sample}
        if self.do_sample:
            arguments.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        if self.stop_strings:
            arguments["stop_strings"] = list(self.stop_strings)
        return arguments


@dataclass
class LoraOptions:
    """Low-rank adapters (``peft.LoraConfig``): only they train; export merges them.

    Args:
        r: the adapters' rank.
        alpha: their scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the adapters' input.
        target_modules: the linear layers that get adapters (Llama's attention and MLP
            projections by default), or ``all-linear``.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


class GenerationModule(L.LightningModule):
    """A causal language model trained to answer instructions.

    Args:
        tasks: task name -> ``{"type": "translation" | "qa" | "generation" | "classification"}``,
            linked from the data module's ``tasks``; the type chooses the metrics.
        backbone: a causal language model: ``smollm2-135m-instruct``, ``tiny-llama`` (tests), a
            local folder (an ``instructrec export`` of this module too).
        pretrained: load the backbone's weights (False: same architecture, random weights).
        lora: train low-rank adapters instead of every weight (None: full fine-tuning).
        decoding: how evaluation and prediction generate (greedy, 64 new tokens by default).
        learning_rate, weight_decay, warmup_ratio: AdamW with linear warm-up and decay.
    """

    def __init__(
        self,
        tasks: dict[str, dict[str, Any]],
        backbone: str = "tiny-llama",
        pretrained: bool = True,
        lora: LoraOptions | None = None,
        decoding: DecodingOptions | None = None,
        learning_rate: float = 5e-5,
        weight_decay: float = 0.0,
        warmup_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("GenerationModule needs at least one task")
        self.save_hyperparameters()
        lora = _options(LoraOptions, lora)
        self.decoding = _options(DecodingOptions, decoding) or DecodingOptions()
        # Plain data in the checkpoint (it is read with weights_only=True), and what `auto` meant.
        self.hparams.lora = asdict(lora) if lora is not None else None
        self.hparams.decoding = asdict(self.decoding)
        self.hparams.backbone = backbones.canonical(backbone)
        self.tasks = {name: dict(spec) for name, spec in tasks.items()}
        self.task_names = list(self.tasks)
        self.generated = {name: GeneratedTask(spec["type"]) for name, spec in self.tasks.items()}
        model = backbones.load_causal_lm(backbone, pretrained=pretrained)
        if lora is not None:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(
                model,
                LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                           target_modules=lora.target_modules, task_type="CAUSAL_LM"),
            )
        self.model = model
        self.val_metrics = TaskMetrics(self.generated)
        self.test_metrics = TaskMetrics(self.generated)
        self._written: dict[str, list[dict]] = {}

    @cached_property
    def tokenizer(self):
        return backbones.load_tokenizer(self.hparams.backbone)

    def task_of(self, batch: dict) -> str:
        return task_of(batch.get("task"), self.task_names)

    # -- the model -------------------------------------------------------------------------------

    def forward(self, input_ids, attention_mask=None, labels=None):
        """The language model's outputs (``logits``; ``loss`` on the answer tokens when ``labels``)."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)

    def lm_loss(self, batch: dict) -> torch.Tensor:
        """Cross-entropy on the answer tokens (the mean over them, as transformers' own loss)."""
        logits, targets = answer_logits(self.model, batch)
        keep = targets != IGNORE_LABEL
        return torch.nn.functional.cross_entropy(logits[keep].float(), targets[keep])

    @torch.no_grad()
    def generate(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, decoding: DecodingOptions | None = None) -> list[str]:
        """The answers to a batch of left-padded prompts, decoded and cut at the stop strings."""
        decoding = decoding or self.decoding
        tokenizer = self.tokenizer
        extra = {"tokenizer": tokenizer} if decoding.stop_strings else {}
        output = self.model.generate(
            input_ids=prompt_ids,
            attention_mask=prompt_mask,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            use_cache=True,
            **decoding.generate_arguments(),
            **extra,
        )
        texts = tokenizer.batch_decode(output[:, prompt_ids.shape[1]:], skip_special_tokens=True)
        return [cut_at_stop(text, decoding.stop_strings) for text in texts]

    # -- training --------------------------------------------------------------------------------

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.lm_loss(batch)
        size = len(batch["input_ids"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        if len(self.task_names) > 1:
            self.log(f"train/{self.task_of(batch)}/loss", loss, batch_size=size)
        return loss

    # -- evaluation ------------------------------------------------------------------------------

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def _evaluate(self, batch: dict, stage: str, metrics: TaskMetrics) -> None:
        name = self.task_of(batch)
        size = len(batch["input_ids"])
        if bool((batch["labels"] != IGNORE_LABEL).any()):
            self.log(f"{stage}/{name}/loss", self.lm_loss(batch), batch_size=size, sync_dist=True, add_dataloader_idx=False)
        generated = self.generate(*(batch[key] for key in PROMPT_INPUTS))
        metrics.update(name, self.generated[name], generated, batch)
        self._written.setdefault(f"{stage}:{name}", []).extend(
            {"id": i, "prompt": p, "prediction": g, "references": r}
            for i, p, g, r in zip(batch["example_id"], batch["prompt"], generated, batch["references"])
        )

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def _log_metrics(self, stage: str, metrics: TaskMetrics) -> None:
        log_stage_metrics(self, stage, metrics)
        self._write_generations(stage)

    def _write_generations(self, stage: str) -> None:
        """Each task's generations of this evaluation beside their references (one file per rank
        when there are several)."""
        trainer = self._trainer
        folder = Path(trainer.default_root_dir if trainer is not None else ".") / "generations"
        step = f"-step{self.global_step}" if stage == "val" else ""
        rank = f".rank{trainer.global_rank}" if trainer is not None and trainer.world_size > 1 else ""
        for key in [k for k in self._written if k.startswith(f"{stage}:")]:
            rows = self._written.pop(key)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{stage}{step}-{key.split(':', 1)[1]}{rank}.jsonl"
            path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> list[dict]:
        """Per example: the task, the prompt and the generated answer."""
        name = self.task_of(batch)
        generated = self.generate(*(batch[key] for key in PROMPT_INPUTS))
        return [{"task": name, "prompt": p, "prediction": g} for p, g in zip(batch["prompt"], generated)]

    def configure_optimizers(self):
        return adamw_with_warmup(self)

    # -- export ----------------------------------------------------------------------------------

    def merged_model(self):
        """The language model with any LoRA adapters merged into its weights (a copy when merged)."""
        if self.hparams.lora is None:
            return self.model
        import copy

        return copy.deepcopy(self.model).merge_and_unload()


def trained_system_prompt(model) -> str | None:
    """The system turn a GenerationModule's tasks were trained with (see the data module's
    ``tasks``), when they share one; None (the chat template's default) otherwise."""
    prompts = {spec.get("system_prompt") for spec in getattr(model, "tasks", {}).values()}
    return prompts.pop() if len(prompts) == 1 else None


def load_generator(source: str, tasks: dict | None = None) -> GenerationModule:
    """A GenerationModule in eval mode, adapters merged, from an ``instructrec fit`` checkpoint
    (loaded with ``weights_only=True``) or a causal-LM backbone (a registered name or a folder, e.g.
    an ``instructrec export``): a distillation teacher, or ``instructrec ask --generate``'s model."""
    from instructrec.errors import InputError
    from instructrec.models.checkpoints import load_module
    from instructrec.paths import resolve_path

    path = resolve_path(source)
    if path.is_file():
        model = load_module(path)
        if not isinstance(model, GenerationModule):
            raise InputError(f"holds a {type(model).__name__}, not a GenerationModule", source=str(path))
    elif backbones.is_causal_lm(source):
        model = GenerationModule(tasks or {"generation": {"type": "generation"}}, backbone=source)
    else:
        raise InputError(f"{source!r} is neither a GenerationModule checkpoint nor a causal language model",
                         hint="give a .ckpt from `instructrec fit` with a GenerationModule, or smollm2-135m-instruct")
    model.model = model.merged_model()
    model.hparams.lora = None  # merged: the weights are plain now
    return model.eval()


def answer_logits(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits that predict answer tokens, and those tokens: ``(B, K, V)`` and ``(B, K)``
    (``IGNORE_LABEL`` where a row has no answer token at that position).

    Why not the model's own loss: it projects every position onto the vocabulary, prompt included;
    with a 49k vocabulary that is a large share of a step. Only the span of positions that predict
    some row's answer is projected (rows are right-padded, so the answers end the rows)."""
    labels = batch["labels"]
    answer = (labels[:, 1:] != IGNORE_LABEL).any(0).nonzero().flatten()  # position i predicts token i + 1
    start, end = (int(answer[0]), int(answer[-1]) + 1) if len(answer) else (0, 1)
    positions = torch.arange(start, end, device=labels.device)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=positions).logits
    return logits, labels[:, start + 1 : end + 1]


def cut_at_stop(text: str, stop_strings: list[str]) -> str:
    """``text`` up to the first stop string, stripped."""
    cut = min((i for i in (text.find(s) for s in stop_strings or []) if i >= 0), default=len(text))
    return text[:cut].strip()


def _options(cls, value):
    """A dataclass option from itself, a mapping (a checkpoint's hyper-parameters) or None."""
    if value is None or isinstance(value, cls):
        return value
    return cls(**dict(value))
