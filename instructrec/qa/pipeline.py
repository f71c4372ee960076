"""Retrieve, then read: answers to questions over a knowledge base, each with its evidence trail.

A (multi-hop) retriever picks passages; the reader (any module mapping token ids to start/end
logits, e.g. :class:`~instructrec.models.qa_reasoning.QAReasoningModule`) reads each passage with
the question in doc-stride windows; the n-best post-processing decodes spans per passage, and the
answer is the best span over all passages. With ``chain=True`` the reader reads the selected
passages as one text instead, in knowledge-base order (a story's facts in the order they were
told): the answer to a multi-hop question may depend on several of them at once ("John put down
the football" after "John went to the hallway"), which a reader of one passage at a time cannot
see. The answer keeps its span score, the passage it was read from and the retrieval trace (hop,
passage id, text, score), so a user can see why it was given. A reader with closed answers
(yes/no, counts, lists: ``QAReasoningModule``'s answer head) answers with one of them where its
answer logits, averaged over every window read, pick it; the answer's score is then that closed
answer's probability and it names no passage (the trace still says what was read).

:class:`RetrieveAndGenerate` retrieves the same way and lets a causal language model
(:class:`~instructrec.models.GenerationModule`) write the answer from the selected passages: the
question and the passages (joined, in retrieval order) become a qa instruction, rendered and put
through the model's chat template as in training. Its answers have no span score; they keep the
trace and name the first passage read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from instructrec.batch import SPAN_CLASS
from instructrec.data.qa_features import prepare_qa_features
from instructrec.passages import join_passages, passage_at
from instructrec.qa.postprocess import SpanCandidate, closed_answer_choices, postprocess_qa_predictions
from instructrec.retrieval.base import Hit
from instructrec.retrieval.multihop import MultiHopRetriever, TraceStep


@dataclass
class Answer:
    question: str
    text: str  # "" when no passage holds a valid span
    score: float | None  # the span's start + end logit; a closed answer's probability
    passage_id: str | None  # where the answer was read
    retrieval_score: float | None
    trace: list[TraceStep] = field(default_factory=list)  # the passages selected hop by hop
    candidates: list[tuple[str, SpanCandidate]] = field(default_factory=list)  # (passage id, span), best first


class RetrieveAndRead:
    """Answers questions from the passages a multi-hop retriever selects.

    Args:
        retriever: selects and ranks passages, with a trace.
        reader: ``reader(input_ids, attention_mask[, token_type_ids]) -> (start, end)`` logits ``(B, S)``,
            and with ``closed_answers`` (an attribute of the reader) their logits ``(B, 1 + n)`` third.
        tokenizer: the reader's fast tokenizer.
        passages: passages read per question (the selected ones first).
        max_length, doc_stride: reader windows (see :func:`prepare_qa_features`).
        n_best, max_answer_length: post-processing (see :func:`postprocess_qa_predictions`).
        batch_size: features per reader forward pass.
        chain: read the selected passages as one context, in knowledge-base order (see above);
            ``passages`` is then unused.
    """

    def __init__(
        self,
        retriever: MultiHopRetriever,
        reader,
        tokenizer,
        *,
        passages: int = 3,
        max_length: int = 384,
        doc_stride: int = 128,
        n_best: int = 20,
        max_answer_length: int = 30,
        batch_size: int = 16,
        chain: bool = False,
    ):
        self.retriever, self.reader, self.tokenizer = retriever, reader, tokenizer
        self.passages, self.max_length, self.doc_stride = passages, max_length, doc_stride
        self.n_best, self.max_answer_length, self.batch_size = n_best, max_answer_length, batch_size
        self.chain = chain
        self.closed_answers = list(getattr(reader, "closed_answers", None) or [])

    def __call__(self, questions: list[str], **search) -> list[Answer]:
        results = self.retriever.retrieve(questions, **search)
        if self.chain:
            return [self._read_chain(r.question, sorted(r.selected, key=lambda h: h.index), r.trace) for r in results]
        return [self._read(r.question, r.passages(self.passages), r.trace) for r in results]

    def read(self, question: str, context: str) -> Answer:
        """The best span (or closed answer) of one given context (no retrieval, no trace)."""
        (prediction,), closed = self._spans(question, [context])
        if closed is not None:
            return Answer(question, closed[0], closed[1], None, None)
        best = prediction.nbest[0] if prediction.nbest else None
        if best is None or not best.text:
            return Answer(question, "", None, None, None)
        return Answer(question, best.text, best.score, None, None, [], [("<context>", c) for c in prediction.nbest])

    def _read(self, question: str, hits: list[Hit], trace: list[TraceStep]) -> Answer:
        if not hits:
            return Answer(question, "", None, None, None, trace)
        predictions, closed = self._spans(question, [h.passage.text for h in hits])
        if closed is not None:
            return Answer(question, closed[0], closed[1], None, None, trace)
        candidates = sorted(
            ((hit, c) for hit, p in zip(hits, predictions) for c in p.nbest),
            key=lambda item: -item[1].score,
        )[: self.n_best]
        return self._answer(question, candidates, trace)

    def _read_chain(self, question: str, hits: list[Hit], trace: list[TraceStep]) -> Answer:
        """Reads ``hits`` (in knowledge-base order) as one context; each span is credited to the
        passage it lies in."""
        if not hits:
            return Answer(question, "", None, None, None, trace)
        texts = [h.passage.text for h in hits]
        context, starts = join_passages(texts)
        (prediction,), closed = self._spans(question, [context])
        if closed is not None:
            return Answer(question, closed[0], closed[1], None, None, trace)
        lengths = [len(t) for t in texts]
        candidates = []
        for candidate in prediction.nbest:
            inside = passage_at(starts, lengths, candidate.start_char) if candidate.text else None
            if inside is not None:
                candidates.append((hits[inside], candidate))
        return self._answer(question, candidates, trace)

    def _answer(self, question: str, candidates: list[tuple[Hit, SpanCandidate]], trace: list[TraceStep]) -> Answer:
        """The best of ``(passage, span)`` candidates (best first) as the answer."""
        if not candidates:
            return Answer(question, "", None, None, None, trace)
        hit, best = candidates[0]
        ranked = [(h.id, c) for h, c in candidates]
        return Answer(question, best.text, best.score, hit.id, hit.score, trace, ranked)

    def _spans(self, question: str, contexts: list[str]) -> tuple[list, tuple[str, float] | None]:
        """The reader's n-best spans per context (:func:`postprocess_qa_predictions`), and the
        closed answer and its probability where the reader's answer logits, averaged over every
        window of the contexts, pick one (else None)."""
        features = prepare_qa_features(
            self.tokenizer,
            [question] * len(contexts),
            contexts,
            [None] * len(contexts),
            [None] * len(contexts),
            max_length=self.max_length,
            doc_stride=self.doc_stride,
        )
        start, end, answer = self._logits(features)
        closed = None
        if answer:
            mean = torch.from_numpy(closed_answer_choices(answer, [0] * len(answer), 1)[0])
            probabilities = mean.softmax(-1)
            choice = int(probabilities.argmax())
            if choice != SPAN_CLASS:
                closed = (self.closed_answers[choice - 1], float(probabilities[choice]))
        return postprocess_qa_predictions(
            start,
            end,
            features["offset_mapping"],
            features["example_index"],
            contexts,
            n_best=self.n_best,
            max_answer_length=self.max_answer_length,
        ), closed

    @torch.inference_mode()
    def _logits(self, features: dict) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Per feature, its unpadded start and end logits, and (closed answers) its answer logits."""
        starts, ends, answers = [], [], []
        names = [n for n in ("input_ids", "token_type_ids") if n in features]
        for first in range(0, len(features["input_ids"]), self.batch_size):
            rows = range(first, min(first + self.batch_size, len(features["input_ids"])))
            batch = self.tokenizer.pad({n: [features[n][i] for i in rows] for n in names}, return_tensors="pt")
            outputs = self.reader(**batch)
            start, end = outputs[:2]
            for k, i in enumerate(rows):
                length = len(features["input_ids"][i])
                starts.append(start[k, :length].float().cpu())
                ends.append(end[k, :length].float().cpu())
                if self.closed_answers:
                    answers.append(outputs[2][k].float().cpu())
        return starts, ends, answers


class RetrieveAndGenerate:
    """Answers written by a generation model from the passages a multi-hop retriever selects.

    Args:
        retriever: selects and ranks passages, with a trace.
        generator: a :class:`~instructrec.models.GenerationModule` (its ``generate`` and tokenizer).
        passages: passages given to the model per question (the selected ones first).
        max_length: prompt tokens (a longer prompt loses the end of its passages).
        system_prompt: the chat template's system turn, as the model was trained with (None: the
            template's default).
        batch_size: questions per ``generate`` call.
    """

    def __init__(self, retriever: MultiHopRetriever, generator, *, passages: int = 3, max_length: int = 512,
                 system_prompt: str | None = None, batch_size: int = 8):
        self.retriever, self.generator = retriever, generator
        self.passages, self.max_length, self.system_prompt, self.batch_size = passages, max_length, system_prompt, batch_size

    def __call__(self, questions: list[str], **search) -> list[Answer]:
        from instructrec.data.generative import prompt_batch
        from instructrec.instructions import Instruction, render

        results = self.retriever.retrieve(questions, **search)
        answers = []
        for first in range(0, len(results), self.batch_size):
            chunk = results[first : first + self.batch_size]
            read = [result.passages(self.passages) for result in chunk]
            prompts = []
            for result, hits in zip(chunk, read):
                context = join_passages([h.passage.text for h in hits])[0] if hits else "(no passage found)"
                prompts.append(render(Instruction("qa", "en", {"question": result.question, "context": context})))
            batch = prompt_batch(self.generator.tokenizer, prompts, self.max_length, self.system_prompt)
            device = self.generator.device
            texts = self.generator.generate(batch["prompt_ids"].to(device), batch["prompt_mask"].to(device))
            for result, hits, text in zip(chunk, read, texts):
                top = hits[0] if hits else None
                answers.append(Answer(result.question, text, None, top.id if top else None, top.score if top else None, result.trace))
        return answers
