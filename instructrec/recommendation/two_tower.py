"""A two-tower recommender trained on item texts: one encoder embeds both a user's history (the
texts of their recent items, oldest first) and a candidate item's text; the score is the cosine of
the two. Trained with in-batch negatives (each user's next item against the other users' next
items in the batch, a softmax over cosines / ``temperature``), so a batch of B pairs gives B - 1
negatives each at the cost of B item encodings.

What it buys over the instruction ranker (a cross-encoder, one forward pass per user and
candidate): items are encoded once and cached, so scoring 100 candidates, or every item for full
ranking, is one user encoding and a matrix product; and, like every text model here, an item
nobody has interacted with is ranked by its text alone.

* :class:`TwoTowerModule`: the LightningModule (``instructrec fit`` with
  ``configs/rec/movielens_two_tower.yaml``);
* :class:`TwoTowerDataModule`: leakage-free training pairs from the leave-one-out split
  (:func:`~.instructions.sample_pairs`: the training history's last positions; validation: the
  validation item after the whole training history; the test item nowhere);
* :func:`history_text`: the user tower's input, the history as a ranking instruction's ``Text:``
  reads (:meth:`~instructrec.instructions.templates.NextItemTemplate.history_text`), so the
  model ranks the options of an instruction a user writes (:func:`rank_instruction`,
  ``instructrec recommend``) from the text it was trained on;
* scoring under the protocol: :class:`~.text_similarity.ItemTextSimilarity` with
  ``profile="history_text"`` on the trained encoder (:meth:`ItemTextSimilarity.from_two_tower`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

from instructrec import backbones
from instructrec.data.resumable import EpochShuffleSampler, ResumableData, ResumableLoader
from instructrec.models.optim import adamw_with_warmup

TASKS = {"next_item": {"type": "two_tower"}}


def history_text(items: Sequence[str], language: str = "en") -> str:
    """The user tower's input: the history's item texts, oldest first, worded as a ranking
    instruction's text ("The user watched, in order: A; B."); tokenised with left truncation, so a
    long history loses its oldest items, never its latest."""
    from instructrec.instructions.templates import NextItemTemplate

    return NextItemTemplate(language).history_text(items)


def query_tokenizer(backbone: str):
    """The backbone's tokenizer, truncating from the left (a history's latest items stay)."""
    tokenizer = backbones.load_tokenizer(backbone)
    tokenizer.truncation_side = "left"
    return tokenizer


def rank_instruction(model: "TwoTowerModule", text: str, max_query_length: int = 192) -> list[tuple[str, float]]:
    """A listwise instruction (the history as its ``Text:``, the candidates as ``Options:``) -> its
    options with their cosine to the history, best first (ties keep the written order)."""
    from instructrec.errors import InputError
    from instructrec.instructions import parse_instruction
    from instructrec.retrieval.dense import encode_texts

    ranking = parse_instruction(text)
    if ranking.task != "classification" or not ranking.fields.get("options"):
        raise InputError(f"a ranking instruction lists its candidates under 'Options:'; this one reads as {ranking.task}")
    backbone = model.hparams["backbone"]
    user = encode_texts(model.encoder, query_tokenizer(backbone), [ranking.fields["text"]], max_length=max_query_length,
                        progress=False)[0]
    options = ranking.fields["options"]
    items = encode_texts(model.encoder, backbones.load_tokenizer(backbone), options, max_length=64, progress=False)
    return sorted(zip(options, (items @ user).tolist()), key=lambda pair: -pair[1])


def mean_pooled(encoder, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Unit-length masked mean of the last hidden states: what
    :func:`~instructrec.retrieval.dense.encode_texts` computes, here with gradients."""
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(pooled.float(), dim=-1)


class TwoTowerModule(L.LightningModule):
    """Both towers share one encoder (a user's history and an item are both text).

    Args:
        backbone: the encoder (default MiniLM-L6, whose mean-pooled embeddings are already
            meaningful: training starts from a working text-similarity recommender).
        pretrained: load the backbone's weights (False: random, for tests).
        temperature: the in-batch softmax's temperature over cosines.
        learning_rate, weight_decay, warmup_ratio: AdamW with linear warm-up and decay.
        tasks: linked from the data module (one ``two_tower`` task); recorded, not chosen.
    """

    def __init__(self, backbone: str = "minilm-l6", pretrained: bool = True, temperature: float = 0.05,
                 learning_rate: float = 3e-5, weight_decay: float = 0.01, warmup_ratio: float = 0.1,
                 tasks: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__()
        if tasks is not None and [spec.get("type") for spec in tasks.values()] != ["two_tower"]:
            raise ValueError(f"TwoTowerModule reads one two_tower task; the data has tasks {tasks}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.save_hyperparameters()
        self.encoder = backbones.load_encoder(backbone, pretrained=pretrained)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return mean_pooled(self.encoder, input_ids, attention_mask)

    def in_batch_logits(self, batch: dict) -> torch.Tensor:
        """``(B, B)``: user i against item j, cosine / temperature; an item that is also another
        row's positive (the same film twice in a batch) is masked off the row's negatives."""
        users = self.embed(batch["query_ids"], batch["query_mask"])
        items = self.embed(batch["item_ids"], batch["item_mask"])
        logits = users @ items.T / self.hparams.temperature
        same = batch["item_index"][:, None] == batch["item_index"][None, :]
        same.fill_diagonal_(False)
        return logits.masked_fill(same, torch.finfo(logits.dtype).min)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self.in_batch_logits(batch)
        target = torch.arange(len(logits), device=logits.device)
        loss = torch.nn.functional.cross_entropy(logits, target)
        size = len(logits)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "train", batch_size=size)
        if stage != "train":
            self.log(f"{stage}/in_batch_acc", (logits.argmax(-1) == target).float().mean(), batch_size=size)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self):
        return adamw_with_warmup(self)


class TwoTowerDataModule(ResumableData, L.LightningDataModule):
    """(history, next item) text pairs from MovieLens-100K's leave-one-out split.

    Args:
        folder: a folder with ``ml-100k.inter`` and ``ml-100k.item`` (default: the installed
            recbole wheel's; MovieLens may not be redistributed: nothing is written).
        tokenizer: the backbone's tokenizer (linked from the model's ``backbone``).
        history_length: items of history in a user's text.
        positions_per_user: training pairs per user (the last positions of the training history).
        batch_size: pairs per batch (each pair's item is a negative for the others).
        max_query_length, max_item_length: tokens per history text and per item text.
        seed: the order of the training pairs (the pairs themselves are the split's); a fit
            killed mid-epoch resumes batch for batch (:mod:`instructrec.data.resumable`).
    """

    def __init__(self, folder: str | None = None, tokenizer: str = "minilm-l6", history_length: int = 10,
                 positions_per_user: int = 20, batch_size: int = 64, max_query_length: int = 192,
                 max_item_length: int = 32, seed: int = 0, num_workers: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()  # in the checkpoint: the scorer reads the history and query lengths back
        self.folder = Path(folder) if folder else None
        self.tokenizer_name = tokenizer
        self.history_length, self.positions_per_user = history_length, positions_per_user
        self.batch_size, self.max_query_length, self.max_item_length = batch_size, max_query_length, max_item_length
        self.seed, self.num_workers = seed, num_workers
        self.pairs: dict[str, list[tuple[str, str, int]]] = {}

    @property
    def tasks(self) -> dict[str, dict]:
        return TASKS

    def setup(self, stage: str | None = None) -> None:
        if self.pairs:
            return
        from instructrec.recommendation.instructions import sample_pairs
        from instructrec.recommendation.movielens import read_interactions, read_movies
        from instructrec.recommendation.protocol import leave_one_out

        movies = read_movies(self.folder)
        split = leave_one_out(read_interactions(self.folder))
        items = sorted(movies)
        index = {item: n for n, item in enumerate(items)}
        sampled = sample_pairs(split, items, history_length=self.history_length,
                               positions_per_user=self.positions_per_user, negatives_per_positive=0, seed=self.seed)
        self.pairs = {stage: [(history_text([movies[i].text() for i in pair.history]), movies[pair.candidate].text(),
                               index[pair.candidate]) for pair in pairs if pair.history]
                      for stage, pairs in sampled.items()}
        self._tokenizers = {"query": query_tokenizer(self.tokenizer_name), "item": backbones.load_tokenizer(self.tokenizer_name)}

    def collate(self, rows: list[tuple[str, str, int]]) -> dict[str, torch.Tensor]:
        queries = self._tokenizers["query"]([r[0] for r in rows], padding=True, truncation=True,
                                            max_length=self.max_query_length, return_tensors="pt")
        items = self._tokenizers["item"]([r[1] for r in rows], padding=True, truncation=True,
                                         max_length=self.max_item_length, return_tensors="pt")
        return {"query_ids": queries["input_ids"], "query_mask": queries["attention_mask"],
                "item_ids": items["input_ids"], "item_mask": items["attention_mask"],
                "item_index": torch.tensor([r[2] for r in rows], dtype=torch.long)}

    def train_dataloader(self) -> DataLoader:
        import os

        # the run's seed (seed_everything's), as for every training loader here
        sampler = EpochShuffleSampler(self.pairs["train"], int(os.environ.get("PL_GLOBAL_SEED", self.seed)))
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return ResumableLoader(self.pairs["train"], sampler=sampler, position=self.train_position, epoch=epoch,
                               batch_size=self.batch_size, collate_fn=self.collate, num_workers=self.num_workers,
                               generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.pairs["val"], batch_size=self.batch_size, collate_fn=self.collate,
                          num_workers=self.num_workers)
