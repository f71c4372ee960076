"""QAReasoningModule: an extractive reader (start/end logits on any backbone) for SQuAD v1.1 / v2.0.

Features: doc-stride windows of long contexts (built by :func:`instructrec.data.qa_features.
prepare_qa_features`); the loss is the mean cross-entropy of the start and end positions (CLS for
"not in this window"); validation and test decode answer *texts* with the vectorised n-best post-processing
(:mod:`instructrec.qa.postprocess`) and scores them with the official-equivalent SQuAD metrics
(:mod:`instructrec.qa.squad_metrics`), so ``val/f1`` is the number ``instructrec evaluate-squad``
prints for the same predictions. SQuAD 2.0: the null-odds threshold that maximises validation F1 is
kept in the checkpoint (buffer ``null_threshold``) and used by :meth:`decode` (test, predict).
``instructrec predict`` with :class:`~instructrec.callbacks.QAPredictionWriter` writes the official
prediction files.

Closed answers (the task's ``answers``, from ``InstructionDataModule(closed_answers=...)``): answers
no span of the context can be (bAbI's yes/no, counts, lists, directions). An answer head on the
first token's state then picks "extract a span" or one of them, as the answer-type heads of readers
for such data do (NAQANet, DROP); its cross-entropy on ``answer_class`` is added to the span loss,
and an example's answer is the closed answer its features' mean logits pick, else the best span.

Supporting facts (``support_weight`` > 0): a per-token head learns which context tokens lie in the
question's supporting facts; decoding marks the runs of tokens it gives probability > 0.5 as the
answer's evidence (``QAPrediction.evidence``; ``predict`` writes ``evidence.json``): a trace of the
facts the reader used, for closed answers too.

Batch contract (``B`` features, ``S`` tokens): ``input_ids``, ``attention_mask``, optional
``token_type_ids`` ``(B, S)``; for training ``start_positions``, ``end_positions`` ``(B,)``; for
text-level evaluation and prediction also, per feature (:data:`instructrec.batch.TEXT_COLUMNS`), ``offset_mapping`` (list of ``S_f`` pairs, NO_OFFSET for
non-context tokens), ``example_id`` (str), ``context`` (str) and ``answers`` (list of reference
texts, empty for no answer). Without those four, evaluation logs the loss only. With closed answers
also ``answer_class`` ``(B,)``; with a support head ``support_labels`` ``(B, S)`` (IGNORE_LABEL off
the context).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import lightning as L
import torch

from instructrec import backbones
from instructrec.batch import IGNORE_LABEL, SPAN_CLASS, TEXT_COLUMNS, encoder_inputs
from instructrec.models.heads import ClassificationHead, SpanHead
from instructrec.models.optim import adamw_with_warmup
from instructrec.qa.postprocess import (
    Evidence,
    QAPrediction,
    closed_answer_choices,
    marked_spans,
    merge_spans,
    postprocess_qa_predictions,
)
from instructrec.qa.squad_metrics import best_thresholds, evaluate_v1, evaluate_v2


class QAReasoningModule(L.LightningModule):
    """Extractive QA reader.

    Args:
        backbone: encoder name (``auto``, ``minilm-l6``, ``tiny-bert``, a local folder).
        tasks: the data's task description (linked by the CLI): one task, of type ``qa``; its name
            is only checked, metrics are ``val/exact_match``, ``val/f1`` whatever it is. Its
            ``answers`` (closed answers, optional) add the answer head.
        pretrained: load the backbone's weights (False: random, same architecture).
        version_2: SQuAD 2.0 (questions may have no answer; null threshold tuned on validation).
        n_best: answer candidates kept per question.
        max_answer_length: longest answer, in tokens.
        learning_rate, weight_decay, warmup_ratio: AdamW with linear warm-up and decay.
        dropout: before the span head.
        support_weight: weight of the supporting-fact loss (0: none): a per-token head learns which
            context tokens lie in a supporting fact (``support_labels``, from
            ``InstructionDataModule(supporting_facts=true)``), binary cross-entropy over the context
            tokens, added to the answer's loss: the strong supervision of Weston et al. (2015).
    """

    def __init__(
        self,
        backbone: str = "tiny-bert",
        tasks: dict[str, dict[str, Any]] | None = None,
        pretrained: bool = True,
        version_2: bool = False,
        n_best: int = 20,
        max_answer_length: int = 30,
        learning_rate: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        dropout: float = 0.1,
        support_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if support_weight < 0:
            raise ValueError(f"support_weight must be >= 0, got {support_weight}")
        if tasks is not None and [spec.get("type") for spec in tasks.values()] != ["qa"]:
            raise ValueError(f"QAReasoningModule reads one extractive QA task; the data has tasks {tasks}")
        self.save_hyperparameters()
        self.hparams.backbone = backbones.canonical(backbone)  # what `auto` meant, for the checkpoint
        self.encoder = backbones.load_encoder(backbone, pretrained=pretrained)
        self.head = SpanHead(self.encoder.config.hidden_size, dropout)
        closed = next(iter(tasks.values())).get("answers") if tasks else None
        self.closed_answers: list[str] = list(closed or [])
        # "extract a span" (SPAN_CLASS) or closed answer i (1 + i)
        self.answer_head = (
            ClassificationHead(self.encoder.config.hidden_size, [""] + self.closed_answers, dropout) if closed else None
        )
        self.support_head = torch.nn.Linear(self.encoder.config.hidden_size, 1) if support_weight > 0 else None
        self.register_buffer("null_threshold", torch.tensor(0.0))  # tuned on validation (v2)
        self._collected: dict[str, list[dict[str, Any]]] = {"val": [], "test": []}

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> tuple[torch.Tensor, ...]:
        """Start and end logits ``(B, S)`` each, float32 (padding gets the most negative float), and
        with closed answers the answer head's logits ``(B, 1 + len(closed_answers))``."""
        outputs = self._outputs({"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids})
        return tuple(outputs[name] for name in ("start", "end", "answer") if name in outputs)

    def _outputs(self, batch: dict) -> dict[str, torch.Tensor]:
        """What the losses and decoding read: ``start`` and ``end`` logits, ``answer`` logits (closed
        answers) and per-token ``support`` logits ``(B, S)`` (``support_weight`` > 0)."""
        inputs = {k: v for k, v in encoder_inputs(batch).items() if v is not None}
        states = self.encoder(**inputs).last_hidden_state
        start, end = self.head(states, inputs.get("attention_mask"))
        outputs = {"start": start, "end": end}
        if self.answer_head is not None:
            outputs["answer"] = self.answer_head(states).float()
        if self.support_head is not None:
            outputs["support"] = self.support_head(states).squeeze(-1).float()
        return outputs

    def _loss(self, outputs: dict[str, torch.Tensor], batch: dict) -> torch.Tensor:
        """The span loss, plus with closed answers the answer head's cross-entropy, plus
        ``support_weight`` times the supporting-fact loss."""
        loss = self.head.loss((outputs["start"], outputs["end"]), batch)
        if self.answer_head is not None:
            labels = batch["answer_class"]
            if bool((labels != IGNORE_LABEL).any()):
                loss = loss + torch.nn.functional.cross_entropy(outputs["answer"], labels, ignore_index=IGNORE_LABEL)
        if self.support_head is not None:
            if "support_labels" not in batch:
                raise ValueError("support_weight > 0 needs support_labels: set the data module's supporting_facts: true")
            labels = batch["support_labels"]
            labelled = labels != IGNORE_LABEL
            if bool(labelled.any()):
                support = torch.nn.functional.binary_cross_entropy_with_logits(
                    outputs["support"][labelled], labels[labelled].float()
                )
                loss = loss + self.hparams.support_weight * support
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self._loss(self._outputs(batch), batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["input_ids"]))
        return loss

    # -- evaluation: logits of every feature, decoded and scored at the epoch's end ------------------

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluation_step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluation_step("test", batch)

    def _evaluation_step(self, stage: str, batch: dict) -> None:
        outputs = self._outputs(batch)
        if "start_positions" in batch:
            loss = self._loss(outputs, batch)
            self.log(f"{stage}/loss", loss, batch_size=len(batch["input_ids"]), sync_dist=True)
        if all(key in batch for key in TEXT_COLUMNS):
            self._collected[stage].append(_collect(outputs, batch))

    def on_validation_epoch_end(self) -> None:
        self._score("val")

    def on_test_epoch_end(self) -> None:
        self._score("test")

    def _score(self, stage: str) -> None:
        """Log ``<stage>/exact_match`` and ``<stage>/f1`` (SQuAD 2.0: validation also tunes and
        logs the null threshold, which test then uses)."""
        collected, self._collected[stage] = self._collected[stage], []
        if not collected:
            return
        tune = self.hparams.version_2 and stage == "val"
        # Tuning: decode the best non-null span everywhere; the threshold is chosen below.
        ids, predictions, references = self.decode(collected, null_threshold=float("inf") if tune else None)
        questions = [(qid, references[qid]) for qid in ids]
        texts = {qid: p.text for qid, p in zip(ids, predictions)}
        if not self.hparams.version_2:
            scores = evaluate_v1(questions, texts)
        else:
            if tune:
                # The official threshold search over the null odds says where answering "" scores
                # best; that threshold is kept (a buffer: it is saved with the checkpoint).
                odds = {qid: p.null_odds if p.null_score is not None else float("-inf") for qid, p in zip(ids, predictions)}
                best = best_thresholds(questions, texts, odds)
                self.null_threshold.fill_(best["best_f1_thresh"])
                texts = {qid: "" if odds[qid] > best["best_f1_thresh"] else texts[qid] for qid in ids}
                self.log(f"{stage}/null_threshold", float(best["best_f1_thresh"]))
            official = evaluate_v2(questions, texts)
            scores = {"exact_match": official["exact"], "f1": official["f1"]}
        for name, value in scores.items():
            self.log(f"{stage}/{name}", float(value), prog_bar=True)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """The batch's logits and text columns; :class:`~instructrec.callbacks.QAPredictionWriter`
        decodes them (an answer may span features of several batches) with :meth:`decode`."""
        return _collect(self._outputs(batch), batch)

    def decode(
        self, collected: list[dict[str, Any]], *, null_threshold: float | None = None
    ) -> tuple[list[str], list[QAPrediction], dict[str, list[str]]]:
        """Answer texts from collected batches (``start``, ``end`` logits, ``answer`` logits with
        closed answers, and the :data:`~instructrec.batch.TEXT_COLUMNS`); ``null_threshold`` None:
        the tuned one.

        Returns the question ids in first-seen order, one prediction each, and the references.
        """
        offsets, example_index, contexts, ids, references, starts, ends, answer, support = [], [], [], [], {}, [], [], [], []
        position: dict[str, int] = {}
        for batch in collected:
            for f, qid in enumerate(batch["example_id"]):
                if qid not in position:
                    position[qid] = len(ids)
                    ids.append(qid)
                    contexts.append(batch["context"][f])
                    references[qid] = list(batch["answers"][f])
                example_index.append(position[qid])
                offsets.append(batch["offset_mapping"][f])
                starts.append(batch["start"][f])
                ends.append(batch["end"][f])
                if "answer" in batch:
                    answer.append(batch["answer"][f])
                if "support" in batch:
                    support.append(batch["support"][f])
        threshold = float(self.null_threshold) if null_threshold is None else null_threshold
        predictions = postprocess_qa_predictions(
            starts,
            ends,
            offsets,
            example_index,
            contexts,
            n_best=self.hparams.n_best,
            max_answer_length=self.hparams.max_answer_length,
            version_2=self.hparams.version_2,
            null_threshold=threshold,
        )
        if answer:
            choices = closed_answer_choices(answer, example_index, len(ids)).argmax(1).tolist()
            predictions = [
                p if choice == SPAN_CLASS else replace(p, text=self.closed_answers[choice - 1], closed=True)
                for p, choice in zip(predictions, choices)
            ]
        if support:
            predictions = _with_evidence(predictions, support, offsets, example_index, contexts)
        return ids, predictions, references

    def configure_optimizers(self):
        return adamw_with_warmup(self)


def _with_evidence(predictions: list[QAPrediction], support: list[torch.Tensor], offsets: list, example_index: list[int],
                   contexts: list[str]) -> list[QAPrediction]:
    """Each prediction with the context its support head marks (probability > 0.5 on a token),
    over all of the example's windows."""
    spans: list[list[tuple[int, int]]] = [[] for _ in predictions]
    for logits, feature_offsets, i in zip(support, offsets, example_index):
        marked = (logits[: len(feature_offsets)] > 0).tolist()  # sigmoid(logit) > 0.5
        spans[i] += marked_spans(feature_offsets, marked)
    return [
        replace(p, evidence=tuple(Evidence(start, end, context[start:end]) for start, end in merge_spans(s)))
        for p, s, context in zip(predictions, spans, contexts)
    ]


def _collect(outputs: dict[str, torch.Tensor], batch: dict) -> dict[str, Any]:
    """What decoding reads of a batch: the logits (``start``, ``end``, ``answer`` with closed
    answers, ``support`` with a support head) on the CPU, and the text columns."""
    logits = {name: outputs[name].detach().float().cpu() for name in ("start", "end", "answer", "support") if name in outputs}
    return {**logits, **{k: list(batch[k]) for k in TEXT_COLUMNS}}
