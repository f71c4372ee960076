"""``InstructionRanker``: a multi-task checkpoint's ``next_item`` head as a recommender.

Every candidate becomes one yes/no instruction (:class:`~instructrec.instructions.templates.NextItemTemplate`),
encoded exactly as the training files were (the data module's own encoder), and its score is the
head's P(yes). So :meth:`score` plugs into :func:`~.protocol.evaluate` and
:func:`~.protocol.full_rank_metrics` like any baseline, and :meth:`rank` answers the listwise
instruction a user writes (history as text, candidates as options).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import torch

from instructrec.errors import InputError
from instructrec.instructions import Instruction, parse_instruction, render
from instructrec.instructions.templates import NextItemTemplate
from instructrec.predictions import predict_batch
from instructrec.recommendation.movielens import Movie
from instructrec.recommendation.protocol import Split, user_history

log = logging.getLogger(__name__)


class InstructionRanker:
    """Scores candidates by P(yes) of the model's next-item head.

    Args:
        model: a ``MultiTaskModule`` with a classification task whose labels are the next-item
            options (``yes``/``no``, or ``是``/``否`` for Chinese); :meth:`from_checkpoint` loads one.
        movies: item id -> :class:`Movie` (its text is what the model reads); needed by :meth:`score`.
        split: the users' histories; needed by :meth:`score`.
        history_length: items of history shown (the last ones), as in the training files.
        stage: ``test``: a user's history is the training history and the validation item (every
            interaction before the test item); ``val``: the training history alone.
        language: which head :meth:`score` asks when the model has both (default: the first found).
        batch_size: instructions per forward pass.
        max_length: tokens per instruction, as in training (the candidate is at the end: an
            instruction that fills it is logged, as it may have lost its candidate).
    """

    def __init__(self, model, movies: Mapping[str, Movie] | None = None, split: Split | None = None, *,
                 history_length: int = 10, stage: str = "test", language: str | None = None, batch_size: int = 64,
                 max_length: int = 256) -> None:
        from instructrec.data import InstructionDataModule

        self.model = model.eval()
        self.movies, self.split = movies, split
        self.history_length, self.stage, self.batch_size, self.max_length = history_length, stage, batch_size, max_length
        # language -> the task whose labels are that language's options
        tasks = getattr(model, "tasks", {})
        self.tasks = {language: name for language, options in NextItemTemplate.OPTIONS.items()
                      for name, spec in tasks.items() if spec.get("labels") == list(options)}
        if not self.tasks:
            raise InputError(f"the model has no next-item task (a classification task with options yes, no or 是, 否); "
                             f"its tasks: {sorted(tasks)}", hint="train one with configs/rec/movielens_ranker.yaml")
        self.language = language or next(iter(self.tasks))
        if self.language not in self.tasks:
            raise InputError(f"the model has no {self.language} next-item task; it has {sorted(self.tasks)}")
        backbone = model.hparams["backbone"]
        self.encoders = {lang: InstructionDataModule.for_inputs(backbone, "classification", tasks[name]["labels"], task_name=name,
                                                                max_length=max_length)
                         for lang, name in self.tasks.items()}
        self._warned = False

    @classmethod
    def from_checkpoint(cls, path: str | Path, movies: Mapping[str, Movie] | None = None, split: Split | None = None,
                        device: str | None = None, **options) -> "InstructionRanker":
        """The ranker of a checkpoint read by the safe loader (``weights_only``, our classes only);
        on ``device`` (default: CUDA when there is one)."""
        from instructrec.models.checkpoints import load_module

        model = load_module(path).to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return cls(model, movies, split, **options)

    # -- scoring ---------------------------------------------------------------------------------

    def score_instructions(self, instructions: Sequence[Instruction]) -> list[float]:
        """P(yes) of each pointwise next-item instruction (all in one language), in batches."""
        if not instructions:
            return []
        language = instructions[0].language
        if language not in self.tasks:
            raise InputError(f"the model has no {language} next-item task; it reads {sorted(self.tasks)}")
        encoder, yes = self.encoders[language], NextItemTemplate.OPTIONS[language][0]
        scores: list[float] = []
        for start in range(0, len(instructions), self.batch_size):
            texts = [render(i.without_answer()) for i in instructions[start:start + self.batch_size]]
            batch = encoder.batch_from_texts(texts)
            if not self._warned and int(batch["attention_mask"].sum(-1).max()) >= self.max_length:
                self._warned = True
                log.warning("an instruction fills max_length=%d tokens: its candidate may be cut off (raise max_length "
                            "or shorten the history)", self.max_length)
            scores += [row["probabilities"][yes] for row in predict_batch(self.model, batch)]
        return scores

    def history(self, user: str) -> list[str]:
        """The item ids shown as ``user``'s history: the last ``history_length`` before the stage's item."""
        if self.split is None or self.movies is None:
            raise InputError("scoring a user needs the movies and the split: InstructionRanker(model, movies, split)")
        return user_history(self.split, user, self.stage, self.history_length)

    def score(self, user: str, items: Sequence[str]) -> list[float]:
        """P(yes) for each item as ``user``'s next one (higher = better), as the protocol's scorers give."""
        history = self.history(user)
        unknown = [item for item in items if item not in self.movies]
        if unknown:
            raise InputError(f"unknown item(s) {unknown[:5]}: not in the movies")
        template = NextItemTemplate(self.language)
        history_texts = [self.movies[i].text() for i in history]
        pairs = [template.apply({"history": history_texts, "candidate": self.movies[i].text()}, seed=0, index=0, variant=0)
                 for i in items]
        return self.score_instructions(pairs)

    __call__ = score  # the protocol's scorers are callables (``evaluate(ranker, candidates)``)

    def rank(self, text: str) -> list[tuple[str, float]]:
        """A listwise instruction (the history as its text, the candidates as options) -> its options
        with their P(yes), best first (ties keep the written order)."""
        ranking = parse_instruction(text)
        if ranking.task != "classification":
            raise InputError(f"a ranking instruction lists its candidates under 'Options:'; this one reads as {ranking.task}")
        options = ranking.fields["options"]
        scores = self.score_instructions(NextItemTemplate(ranking.language).pointwise(ranking))
        return sorted(zip(options, scores), key=lambda pair: -pair[1])
