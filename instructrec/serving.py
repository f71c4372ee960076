"""``instructrec serve``: a trained model behind an HTTP endpoint, on LitServe.

Requests are raw instructions in the instruction language, JSON in and JSON out::

    POST /predict  {"instruction": "Classify the sentiment ...\\nOptions: positive, negative"}
    -> {"task": "sentiment", "label": "positive", "probabilities": {"positive": 0.91, ...}}

What a model answers, by family:

* classification (a :class:`~instructrec.models.MultiTaskModule`, a distilled student): the label and
  its probabilities, from the head whose label set is the instruction's options;
* QA (a :class:`~instructrec.models.QAReasoningModule`): the answer and its span score, read from
  the instruction's context, or, without one, retrieved from the knowledge base (``--kb``) with the
  trace ``instructrec ask`` prints;
* generation (a :class:`~instructrec.models.GenerationModule`, or a causal-LM backbone): the
  generated answer to any instruction.

A request that is not a usable instruction (no ``instruction`` string, a parse error, options no
head knows, a question without context and no knowledge base) is answered with HTTP 400 and
``{"error": ..., "offset": ...}``; it never reaches the model. LitServe batches requests that
arrive together (``max_batch_size``, ``batch_timeout``); ``/health`` and ``/info`` (the model, its
tasks and labels, the version) are LitServe's routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import litserve as ls
from fastapi import HTTPException

from instructrec.errors import InputError
from instructrec.instructions import Instruction


@dataclass
class Request:
    """A decoded request: the instruction's text and what serves it."""

    text: str
    task: str
    kind: str  # classification | qa | generation
    instruction: Instruction

    @property
    def fields(self) -> dict:
        return self.instruction.fields


def load_served(source: str):
    """The model to serve: a checkpoint of any family (``weights_only=True``, classes from our list),
    or a causal-LM backbone (a registered name or a folder, an ``instructrec export`` included)."""
    from instructrec import backbones
    from instructrec.models.checkpoints import load_module
    from instructrec.models.generation import load_generator
    from instructrec.paths import resolve_path

    path = resolve_path(source)
    if path.is_file():
        return load_module(path).eval()
    if backbones.is_causal_lm(source):
        return load_generator(source)
    raise InputError(f"{source!r} is neither a checkpoint nor a causal language model folder",
                     hint="serve a .ckpt written by `instructrec fit` (any family), or an exported generation model")


def family_of(model) -> str:
    from instructrec.models import GenerationModule, QAReasoningModule

    if isinstance(model, GenerationModule):
        return "generation"
    if isinstance(model, QAReasoningModule):
        return "qa"
    return "classification"


def model_tasks(model) -> dict[str, dict]:
    """``{task: {"type", "labels"}}`` a model answers (a QA reader: one ``qa`` task)."""
    tasks = getattr(model, "tasks", None)
    if tasks is None:
        return {"qa": {"type": "qa"}}
    return {name: {k: v for k, v in spec.items() if k in ("type", "labels")} for name, spec in tasks.items()}


class InstructionAPI(ls.LitAPI):
    """The LitAPI of ``instructrec serve`` (see the module docstring).

    Args:
        source: a checkpoint, or a causal-LM backbone.
        kb: knowledge-base files for QA questions without a context.
        max_length: tokens per encoded input (classification, generation prompts).
        system_prompt: generation: the chat template's system turn, as the model was trained with.
        max_batch_size, batch_timeout: LitServe's dynamic batching.
    """

    def __init__(self, source: str, kb: list[str] | None = None, max_length: int = 256, system_prompt: str | None = None,
                 max_batch_size: int = 8, batch_timeout: float = 0.01) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.source, self.kb, self.max_length, self.system_prompt = source, list(kb or []), max_length, system_prompt

    def setup(self, device) -> None:
        import torch

        self.model = load_served(self.source).to(device)
        self.family = family_of(self.model)
        if self.family == "generation" and self.system_prompt is None:
            from instructrec.models.generation import trained_system_prompt

            self.system_prompt = trained_system_prompt(self.model)
        self.tasks = model_tasks(self.model)
        self.encoders = {}
        self.pipeline = None
        self.no_grad = torch.no_grad
        if self.family == "qa":
            from instructrec.qa.ask import build_pipeline

            self.pipeline = build_pipeline(self.kb, self.source, max_length=min(self.max_length, 384))
        elif self.family == "classification":
            from instructrec.data import InstructionDataModule

            backbone = self.model.hparams["backbone"]
            self.encoders = {name: InstructionDataModule.for_inputs(backbone, "classification", spec["labels"], task_name=name,
                                                                    max_length=self.max_length)
                             for name, spec in self.tasks.items() if spec.get("type") == "classification"}

    # -- requests -------------------------------------------------------------------------------

    def decode_request(self, request: dict) -> Request:
        """The request's instruction, parsed and matched to a task; HTTP 400 when it cannot be."""
        from instructrec.instructions import InstructionError, parse_instruction

        text = request.get("instruction") if isinstance(request, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise HTTPException(400, {"error": 'the request must be JSON with an "instruction" string', "offset": None})
        try:
            instruction = parse_instruction(text)
        except InstructionError as error:
            raise HTTPException(400, {"error": error.reason, "offset": error.offset}) from None
        if self.family == "generation":
            return Request(text, next(iter(self.tasks)), "generation", instruction)
        if self.family == "qa":
            if instruction.task != "qa":
                raise self._refuse(f"this server answers questions; the instruction is a {instruction.task} instruction")
            if "context" not in instruction.fields and self.pipeline.retriever is None:
                raise self._refuse("the question has no context, and this server has no knowledge base (--kb)")
            return Request(text, "qa", "qa", instruction)
        if instruction.task != "classification":
            raise self._refuse(f"this server classifies; the instruction is a {instruction.task} instruction")
        options = set(instruction.fields["options"])
        task = next((name for name, spec in self.tasks.items() if set(spec.get("labels") or []) == options), None)
        if task is None:
            known = {name: spec.get("labels") for name, spec in self.tasks.items()}
            raise self._refuse(f"no task of this model has the options {sorted(options)}; its tasks: {known}")
        return Request(text, task, "classification", instruction)

    @staticmethod
    def _refuse(reason: str) -> HTTPException:
        return HTTPException(400, {"error": reason, "offset": None})

    def batch(self, inputs: list[Request]) -> list[Request]:
        return list(inputs)

    def unbatch(self, outputs: list[dict]) -> list[dict]:
        return list(outputs)

    def predict(self, requests: list[Request] | Request) -> list[dict] | dict:
        single = isinstance(requests, Request)
        batch = [requests] if single else requests
        answers: list[dict | None] = [None] * len(batch)
        with self.no_grad():
            for kind in ("classification", "qa", "generation"):
                chosen = [i for i, r in enumerate(batch) if r.kind == kind]
                if chosen:
                    for i, answer in zip(chosen, getattr(self, f"_{kind}")([batch[i] for i in chosen])):
                        answers[i] = answer
        return answers[0] if single else answers

    def _classification(self, requests: list[Request]) -> list[dict]:
        """Each task's requests encoded and predicted together (one head per task)."""
        from instructrec.predictions import predict_texts

        answers: dict[int, dict] = {}
        for task in dict.fromkeys(r.task for r in requests):
            chosen = [i for i, r in enumerate(requests) if r.task == task]
            rows = predict_texts(self.model, self.encoders[task], [requests[i].text for i in chosen])
            answers.update({i: {"task": task, **row} for i, row in zip(chosen, rows)})
        return [answers[i] for i in range(len(requests))]

    def _qa(self, requests: list[Request]) -> list[dict]:
        from instructrec.qa.ask import answer_record

        answers = []
        retrieve = [r for r in requests if "context" not in r.fields]
        retrieved = iter(self.pipeline([r.fields["question"] for r in retrieve])) if retrieve else iter(())
        for request in requests:
            if "context" in request.fields:
                answer = self.pipeline.read(request.fields["question"], request.fields["context"])
            else:
                answer = next(retrieved)
            answers.append({"task": "qa", **answer_record(answer)})
        return answers

    def _generation(self, requests: list[Request]) -> list[dict]:
        from instructrec.data.generative import prompt_batch
        from instructrec.instructions import render

        prompts = [render(request.instruction.without_answer()) for request in requests]  # parsed once, in decode_request
        batch = prompt_batch(self.model.tokenizer, prompts, self.max_length, self.system_prompt)
        device = self.model.device
        texts = self.model.generate(batch["prompt_ids"].to(device), batch["prompt_mask"].to(device))
        return [{"task": r.task, "answer": text} for r, text in zip(requests, texts)]

    def encode_response(self, output: dict) -> dict:
        return output


def server_metadata(source: str, kb: list[str]) -> dict[str, Any]:
    """What ``/info`` shows besides LitServe's own: the model, its family, tasks and labels (read
    from the checkpoint's hyper-parameters, without building the model)."""
    from importlib.metadata import version

    from instructrec.models.checkpoints import read_checkpoint
    from instructrec.paths import resolve_path

    path = resolve_path(source)
    info: dict[str, Any] = {"model": source, "knowledge_base": list(kb), "instructrec_version": version("instructrec")}
    if not path.is_file():
        return {**info, "family": "generation", "class": "GenerationModule", "backbone": source}
    hparams = read_checkpoint(path, mmap=True).get("hyper_parameters") or {}
    class_path = str(hparams.get("_class_path", "instructrec.models.MultiTaskModule"))
    family = {"GenerationModule": "generation", "GenerationDistillationModule": "generation",
              "QAReasoningModule": "qa"}.get(class_path.rsplit(".", 1)[-1], "classification")
    tasks = {name: {k: v for k, v in spec.items() if k in ("type", "labels")} for name, spec in (hparams.get("tasks") or {"qa": {"type": "qa"}}).items()}
    return {**info, "family": family, "class": class_path, "backbone": hparams.get("backbone"), "tasks": tasks}
