"""``MultiTaskDataModule``: several instruction sources, one task each, mixed by an explicit schedule.

Each source is an :class:`InstructionDataModule` (its own files, template, reader options,
``max_length`` and ``batch_size``), so parsing, checks, the Arrow cache and collation are the same
code as single-task training. Training batches come from :class:`MultiTaskBatches`: every batch
holds one task's examples and carries ``batch["task"]``; which task each step draws is a
:class:`~instructrec.data.sampling.TaskSchedule`. Validation, test and predict return one
DataLoader per source (Lightning adds its distributed sampler to those), so every task is
evaluated on its own.

Under DDP the training batches are sharded here, per rank (Lightning does not shard an iterable
data set): all ranks share the seeded schedule, so all step the same task at each step, each on its
own shard of that task's rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from instructrec.data.datamodule import InstructionDataModule
from instructrec.data.resumable import ResumableData, ResumableLoader
from instructrec.data.sampling import TaskSchedule, batches_per_pass, shuffled_shard
from instructrec.errors import InputError

# Options a source inherits from the multi-task module unless it sets its own.
SHARED_OPTIONS = ("max_length", "batch_size", "num_workers", "cache_dir", "on_error")


@dataclass
class SourceOptions:
    """One task's data in a :class:`MultiTaskDataModule`: the :class:`InstructionDataModule`
    options of its source (see there for each, and for the defaults of those left ``None``). Typed, so
    that a misspelt key is refused, with the source's name, before any data is read; those left
    ``None`` among ``max_length``, ``batch_size``, ``num_workers``, ``cache_dir`` and ``on_error``
    come from the multi-task module. (The ``sources`` argument stays a plain mapping in the config's
    signature: an override of ``--data.init_args.sources`` replaces the sources, as it always did,
    instead of being merged key by key into the YAML's.)"""

    train: str | list[str] | None = None
    val: str | list[str] | None = None
    test: str | list[str] | None = None
    predict: str | list[str] | None = None
    template: str | None = None
    template_args: dict[str, Any] | None = None
    reader_args: dict[str, Any] | None = None
    max_length: int | None = None
    doc_stride: int | None = None
    batch_size: int | None = None
    num_workers: int | None = None
    on_error: str | None = None
    cache_dir: str | None = None
    val_fraction: float | None = None
    seed: int | None = None
    text_field: str | None = None
    file_format: str | None = None
    test_fraction: float | None = None
    max_examples: dict[str, int] | None = None
    generative: bool | None = None
    max_answer_length: int | None = None
    system_prompt: str | None = None

    @classmethod
    def of(cls, name: str, options: "SourceOptions | dict[str, Any]") -> "SourceOptions":
        """``options`` as ``SourceOptions`` (a dict from Python code is checked the same way)."""
        if isinstance(options, cls):
            return options
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            set_here = [k for k in unknown if k in ("tokenizer", "task_name")]
            reason = f"{set_here[0]} is set by the multi-task module, not per source" if set_here else (
                f"unknown option(s) {unknown}; a source takes {[f.name for f in fields(cls)]}")
            raise InputError(f"source {name!r}: {reason}")
        return cls(**options)

    def arguments(self, shared: dict[str, Any]) -> dict[str, Any]:
        """The source's ``InstructionDataModule`` arguments, the shared ones filled in."""
        own = {key: value for key, value in asdict(self).items() if value is not None}
        return {**{key: shared[key] for key in SHARED_OPTIONS}, **own}


class MultiTaskDataModule(ResumableData, L.LightningDataModule):
    """Several tasks' data: one :class:`InstructionDataModule` per source, mixed for training.

    Args:
        sources: task name -> its source's options, checked as :class:`SourceOptions` (``train``, ``val``,
            ``test``, ``template``, ``template_args``, ``reader_args``, ``max_length``,
            ``batch_size``, ``val_fraction``, ``test_fraction``, ``max_examples``, ...). The name
            becomes the source's ``task_name``: its head and its metrics ``val/<name>/...``.
        tokenizer: backbone name whose tokenizer encodes every source (linked to the model).
        sampling: ``proportional``, ``uniform``, ``temperature``, ``annealed`` or ``round_robin``
            (see :mod:`instructrec.data.sampling`).
        epoch_length: training steps per epoch: an int, ``sum`` (all sources' batches),
            ``largest`` (sources x the largest's batches) or ``smallest`` (sources x the smallest's).
        temperature: ``T`` for ``temperature`` sampling (``p ~ n ** (1/T)``).
        alpha_start, alpha_end, anneal_steps: ``annealed`` sampling, ``p ~ n ** alpha`` with alpha
            linear from start to end over ``anneal_steps`` steps.
        seed: the task schedule's and the row order's seed (shared by all ranks).
        max_length, batch_size, num_workers, cache_dir, on_error: defaults for every source.
    """

    def __init__(
        self,
        sources: dict[str, dict[str, Any]],
        tokenizer: str = "tiny-bert",
        sampling: str = "proportional",
        epoch_length: int | str = "sum",
        temperature: float = 2.0,
        alpha_start: float = 1.0,
        alpha_end: float = 0.2,
        anneal_steps: int = 1000,
        seed: int = 0,
        max_length: int = 128,
        batch_size: int = 16,
        num_workers: int = 0,
        cache_dir: str = ".cache/instructrec",
        on_error: str = "raise",
    ) -> None:
        super().__init__()
        if not sources:
            raise ValueError("MultiTaskDataModule needs at least one source")
        shared = dict(max_length=max_length, batch_size=batch_size, num_workers=num_workers, cache_dir=cache_dir, on_error=on_error)
        self.sources: dict[str, InstructionDataModule] = {}
        for name, options in sources.items():
            arguments = SourceOptions.of(name, options).arguments(shared)
            self.sources[name] = self.build_source(**arguments, tokenizer=tokenizer, task_name=name)
        self.tokenizer_name = tokenizer
        self.schedule_options = dict(
            strategy=sampling,
            epoch_length=epoch_length,
            temperature=temperature,
            alpha_start=alpha_start,
            alpha_end=alpha_end,
            anneal_steps=anneal_steps,
            seed=seed,
        )
        TaskSchedule(sizes=(1,) * len(sources), **self.schedule_options)  # fail fast on bad options
        self.seed = seed

    def build_source(self, **options: Any) -> InstructionDataModule:
        """One source's data module; a subclass whose sources carry more (teacher logits) overrides it."""
        return InstructionDataModule(**options)

    @property
    def tasks(self) -> dict[str, dict]:
        """``{name: {"type": ..., "labels": [...]}}`` over all sources, in source order."""
        return {name: spec for source in self.sources.values() for name, spec in source.tasks.items()}

    @property
    def names(self) -> list[str]:
        return list(self.sources)

    def prepare_data(self) -> None:
        for source in self.sources.values():
            source.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        for source in self.sources.values():
            source.setup(stage)

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        batches = self.train_batches(rank=rank, world_size=world_size)
        epoch = trainer.current_epoch if trainer is not None else 0
        workers = max(source.num_workers for source in self.sources.values())
        # (its own generator, for the workers' seeds: see InstructionDataModule._loader)
        return ResumableLoader(batches, batch_size=None, num_workers=workers, persistent_workers=workers > 0,
                               generator=torch.Generator().manual_seed(self.seed),
                               position=self.train_position, epoch=epoch)

    def train_batches(self, rank: int = 0, world_size: int = 1) -> "MultiTaskBatches":
        """The training batches of one rank (also usable without a Trainer, e.g. in a plain loop)."""
        missing = [name for name, source in self.sources.items() if "train" not in source.datasets]
        if missing:
            raise RuntimeError(f"no train data for {missing}: set `train` for every source, and call setup('fit')")
        inputs = {name: source.loader_inputs("train") for name, source in self.sources.items()}
        return MultiTaskBatches(
            {name: dataset for name, (dataset, _) in inputs.items()},
            {name: source.batch_size for name, source in self.sources.items()},
            {name: collate for name, (_, collate) in inputs.items()},
            self.schedule_options,
            rank=rank,
            world_size=world_size,
        )

    def val_dataloader(self) -> list[DataLoader]:
        return self._loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._loaders("test")

    def predict_dataloader(self) -> list[DataLoader]:
        return self._loaders("predict")

    def _loaders(self, split: str) -> list[DataLoader]:
        """One loader per source that has ``split``, in source order (dataloader_idx = position)."""
        loaders = [source._loader(split) for source in self._with(split)]
        if not loaders:
            raise RuntimeError(f"no {split} data in any source")
        return loaders

    def _with(self, split: str) -> list[InstructionDataModule]:
        return [source for source in self.sources.values() if split in source.datasets]

    def example_ids(self, split: str, dataloader_idx: int = 0) -> list[str]:
        return self._with(split)[dataloader_idx].example_ids(split)

    def batch_from_texts(self, texts: list[str]) -> dict:
        """A batch from raw instructions, encoded by the first source whose checks accept them all."""
        errors = []
        for name, source in self.sources.items():
            try:
                return source.batch_from_texts(texts)
            except ValueError as error:
                errors.append(f"{name}: {error}")
        raise ValueError("no source accepts these instructions: " + "; ".join(errors))


class MultiTaskBatches(IterableDataset):
    """One epoch of ready training batches for one rank, following the seeded task schedule.

    Each source is an endless stream of passes: pass ``c`` is a ``(seed, task, c)``-seeded shuffle,
    sharded by rank, cut into batches. An epoch continues each stream where the previous epochs
    left it (:meth:`TaskSchedule.draws_before`), so a short epoch never re-reads a source's start.
    ``epoch`` is set by the training loader (:meth:`start_pass`) and advanced after each pass over
    the iterator (with persistent workers each worker advances its own copy in step). With several DataLoader workers,
    worker ``w`` builds steps ``w, w + W, ...`` and the loader interleaves them back in order.
    """

    def __init__(self, datasets: dict, batch_sizes: dict[str, int], collators: dict, schedule: dict, *, rank: int, world_size: int):
        """``datasets`` and ``collators`` per task, as the sources' ``loader_inputs`` give them."""
        self.names = list(datasets)
        self.datasets = datasets
        self.batch_sizes = batch_sizes
        self.collators = collators
        self.rank, self.world_size = rank, world_size
        self.rows = {name: len(dataset) for name, dataset in datasets.items()}
        sizes = tuple(batches_per_pass(self.rows[n], batch_sizes[n], world_size) for n in self.names)
        self.schedule = TaskSchedule(sizes=sizes, **schedule)
        self.epoch = 0
        self.skip = 0
        self._shards: dict[tuple[str, int], list[int]] = {}

    def __len__(self) -> int:
        return self.schedule.steps_per_epoch

    def batch_plan(self, epoch: int) -> list[tuple[str, list[int]]]:
        """``(task, row indices)`` of every step of ``epoch`` on this rank."""
        drawn = self.schedule.draws_before(epoch)
        plan = []
        for source in self.schedule.epoch(epoch):
            name = self.names[source]
            per_pass = self.schedule.sizes[source]
            cycle, position = divmod(drawn[source], per_pass)
            drawn[source] += 1
            shard = self._shard(name, cycle)
            size = self.batch_sizes[name]
            plan.append((name, shard[position * size : (position + 1) * size]))
        return plan

    def _shard(self, name: str, cycle: int) -> list[int]:
        if (name, cycle) not in self._shards:
            self._shards[(name, cycle)] = shuffled_shard(
                self.rows[name], seed=self.schedule.seed, source=name, cycle=cycle, rank=self.rank, world_size=self.world_size
            )
        return self._shards[(name, cycle)]

    def start_pass(self, epoch: int, skip: int) -> None:
        """The next pass is ``epoch``'s without its first ``skip`` steps (a resumed fit's, see
        :class:`~instructrec.data.resumable.ResumableLoader`)."""
        self.epoch, self.skip = epoch, skip

    def __iter__(self):
        epoch, skip = self.epoch, self.skip
        self.epoch, self.skip = epoch + 1, 0
        worker = get_worker_info()
        start, step = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        plan = self.batch_plan(epoch)[skip:]
        for name, rows in plan[start::step]:
            yield self.collators[name]([self.datasets[name][i] for i in rows])
