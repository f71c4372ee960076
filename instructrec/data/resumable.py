"""Training loaders that a fit killed mid-epoch resumes exactly, batch for batch.

A pass's order is a function of ``(seed, epoch)`` alone (:class:`EpochShuffleSampler`, or
:class:`~instructrec.data.multitask.MultiTaskBatches`' schedule), so where training stands is just
the epoch and the number of batches already handed out (:class:`TrainPosition`). The data module
keeps it in every checkpoint (:class:`ResumableData`), and a resumed pass skips those batches'
indices before any row is read.
"""

from __future__ import annotations

from functools import cached_property
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader, IterableDataset, RandomSampler

from instructrec.hashing import stable_hash


LENGTH_POOL = 50  # batches per length-sorted pool: the Hugging Face Trainer's megabatch


def group_by_length(
    order: list[int], lengths: Sequence[int], batch_size: int, shuffle: Callable[[list], None], pool: int = LENGTH_POOL
) -> list[list[int]]:
    """Batches of similar lengths from a shuffled ``order``: pools of ``pool`` batches sorted by
    length, cut into batches, the batches shuffled in place by ``shuffle``. A batch then pads little
    while the pass stays random (the Hugging Face Trainer's ``group_by_length``, in spirit)."""
    batches = []
    for first in range(0, len(order), pool * batch_size):
        chunk = sorted(order[first : first + pool * batch_size], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    shuffle(batches)
    return batches


class EpochShuffleSampler(RandomSampler):
    """A shuffle that depends on ``(seed, epoch)`` only, not on the global random state; the
    :class:`ResumableLoader` sets the epoch.

    With ``lengths`` (one per row) the pass is length-grouped (:func:`group_by_length`, for loaders
    of ``batch_size``, in pools of ``pool`` batches): every batch of the loader holds rows of
    similar length, so dynamic padding pads little; the one short batch comes last.

    A ``RandomSampler`` so that under DDP Lightning swaps in its ``DistributedSampler`` (shuffled by
    the same run seed and epoch) as it does for ``shuffle=True``; that one does not group by length.
    """

    def __init__(self, data_source, seed: int = 0, *, lengths: Sequence[int] | None = None, batch_size: int = 1,
                 pool: int = LENGTH_POOL) -> None:
        super().__init__(data_source)
        if lengths is not None and len(lengths) != len(data_source):
            raise ValueError(f"{len(lengths)} lengths for {len(data_source)} rows")
        self.seed = seed
        self.lengths, self.batch_size, self.pool = lengths, batch_size, pool
        self.epoch = 0
        self.skip = 0

    def start_pass(self, epoch: int, skip: int) -> None:
        """The next pass is ``epoch``'s, without its first ``skip`` indices.

        (No ``set_epoch``: Lightning calls it after the pass's iterator may exist, with its own
        count of epochs, which a fit stopped by ``max_steps`` and resumed has one too many of.)
        """
        self.epoch, self.skip = epoch, skip

    def __iter__(self):
        generator = torch.Generator().manual_seed(stable_hash("train-order", self.seed, self.epoch))
        order = torch.randperm(len(self.data_source), generator=generator).tolist()
        if self.lengths is not None:
            def shuffle(batches: list) -> None:
                batches[:] = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

            batches = group_by_length(order, self.lengths, self.batch_size, shuffle, self.pool)
            batches.sort(key=lambda batch: len(batch) < self.batch_size)  # stable: the short one last
            order = [i for batch in batches for i in batch]
        skip, self.skip = self.skip, 0
        return iter(order[skip:])


class TrainPosition:
    """Where training stands in its passes over the data: the epoch of the pass being served and
    the batches of it handed out, and the position a resumed fit starts from.

    One object, shared by a data module and its training loader: Lightning rebuilds the loader
    under DDP (to put its sampler in) from the same arguments, so the copy counts here too.
    """

    def __init__(self) -> None:
        self.epoch = 0
        self.served = 0
        self.resume_at: tuple[int, int] | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches": self.served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.resume_at = int(state["epoch"]), int(state["batches"])


class ResumableData:
    """Mixed into a ``LightningDataModule``: its checkpoint state is its :class:`TrainPosition`.

    Why the data module's state and not only the loader's (which Lightning also keeps): Lightning
    hands a loader its state only if it builds the loader after reading the checkpoint, and a model
    whose ``configure_optimizers`` asks for ``trainer.estimated_stepping_batches`` makes it build
    and start the loader before; a data module's state is read before either.
    """

    @cached_property
    def train_position(self) -> TrainPosition:
        return TrainPosition()

    def state_dict(self) -> dict:
        return {"train_position": self.train_position.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        if "train_position" in state_dict:
            self.train_position.load_state_dict(state_dict["train_position"])


class ResumableLoader(DataLoader):
    """A training DataLoader that a fit resumes mid-epoch: it serves the pass of its
    :class:`TrainPosition`, skipping the batches a resumed fit had already trained on, and has
    Lightning's stateful-loader interface (``state_dict``/``load_state_dict``).

    The sampler (or an iterable data set) must have ``start_pass(epoch, skip)`` to skip indices
    cheaply; with any other (Lightning's ``DistributedSampler`` under DDP) skipped batches are read
    and dropped.

    Args:
        position: the data module's :attr:`ResumableData.train_position`.
        epoch: the epoch of the first pass (the trainer's ``current_epoch`` when the loader is built).
        Everything else goes to ``DataLoader``.
    """

    def __init__(self, *args, position: TrainPosition, epoch: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.position = position
        self.next_epoch = epoch

    def state_dict(self) -> dict[str, int]:
        return self.position.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position.load_state_dict(state)

    def __iter__(self):
        epoch, skip = self.next_epoch, 0
        if self.position.resume_at is not None:
            (epoch, skip), self.position.resume_at = self.position.resume_at, None
            if skip >= len(self):  # that pass was over: the next one starts from its beginning
                epoch, skip = epoch + 1, 0
        self.next_epoch = epoch + 1
        to_drop = self._start_pass(epoch, skip)
        iterator = super().__iter__()
        self.position.epoch, self.position.served = epoch, skip
        return self._counted(iterator, to_drop)

    def _start_pass(self, epoch: int, skip: int) -> int:
        """Point the sampler (or iterable data set) at the pass; the batches left to drop here."""
        source = self.dataset if isinstance(self.dataset, IterableDataset) else self.sampler
        if hasattr(source, "start_pass"):
            source.start_pass(epoch, skip * (self.batch_size or 1))
            return 0
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        return skip

    def _counted(self, iterator, to_drop: int):
        for _ in range(to_drop):
            next(iterator, None)
        for batch in iterator:
            self.position.served += 1
            yield batch
