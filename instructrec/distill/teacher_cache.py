"""Cached teacher outputs: run the teacher once over an encoded split, keep its logits beside the
data cache, and train without the teacher.

Why: the teacher's forward pass is most of a distillation step's cost on CPU (a 12-layer teacher
is 5x a 6-layer student), and it gives the same answer every epoch.

Layout: ``<cache_dir>/teacher-<split>-<key>/`` holds an Arrow dataset (one row per row of the
encoded split, in the same order) and ``meta.json``, written atomically like the data cache
(:mod:`instructrec.data.cache`). ``key`` hashes

* the teacher's identity (a content hash of its folder files or checkpoint bytes, plus its dtype),
* the data's identity: a digest of the split's model inputs (``input_ids``, ``attention_mask``,
  ``token_type_ids``) and row order. It changes exactly when the data cache key's content does (and
  also for in-memory data sets that have no cache key); the data cache folder's name is kept in
  ``meta.json`` for people,
* the settings: task, task type, label order, ``top_k``, storage dtype, format version.

So another teacher, other data or other settings give another folder: a stale cache is never read.
A folder whose ``meta.json`` disagrees with what is expected (a copied or corrupted entry) is
rebuilt, not used.

Columns (``G`` is each of the task's logit groups: ``logits`` for classification, ``start_logits``
and ``end_logits`` for qa), float16:

* full: ``teacher_<G>``: ``(C,)`` classification logits, or ``(S_row,)`` QA logits over the row's
  own tokens (padding is added back at collation as ``-inf``);
* top-k: ``teacher_<G>_topk_values`` ``(K,)`` and ``teacher_<G>_topk_indices`` ``(K,)`` (int32); a
  QA row with fewer than ``K`` positions is padded with ``-inf`` values at index 0.

Precision: logits are rounded to float16 (relative error <= 2^-11); the soft-target loss from the
cache matches the online loss within ``CACHE_LOSS_ATOL + CACHE_LOSS_RTOL * |loss|`` (tested).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from instructrec.data import cache as data_cache
from instructrec.distill.outputs import as_groups, logit_groups, teacher_columns
from instructrec.distill.teacher import FrozenTeacher

log = logging.getLogger(__name__)

TEACHER_CACHE_VERSION = 1
INPUT_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")
CACHE_LOSS_ATOL = 1e-3
CACHE_LOSS_RTOL = 1e-2


def data_identity(dataset) -> str:
    """A digest of the dataset's model inputs and their row order."""
    digest = hashlib.sha256(str(len(dataset)).encode())
    columns = [c for c in INPUT_COLUMNS if c in dataset.column_names]
    import pyarrow.compute as pc

    for table in dataset.with_format("arrow", columns=columns).iter(batch_size=4096):
        for name in columns:
            column = table.column(name).combine_chunks()
            digest.update(name.encode())
            digest.update(np.asarray(pc.list_value_length(column), dtype=np.int64).tobytes())
            digest.update(np.asarray(column.flatten(), dtype=np.int64).tobytes())
    return digest.hexdigest()[:24]


def cache_settings(teacher: FrozenTeacher, task: str, top_k: int | None) -> dict:
    spec = teacher.tasks[task]
    return {
        "version": TEACHER_CACHE_VERSION,
        "task": task,
        "type": spec["type"],
        "labels": spec.get("labels"),
        "top_k": top_k,
        "storage": "float16",
    }


def teacher_cache_folder(cache_dir: str | Path, split: str, teacher_identity: str, data_id: str, settings: dict) -> Path:
    key = data_cache.cache_key([], {"teacher": teacher_identity, "data": data_id, "settings": settings})
    return Path(cache_dir) / f"teacher-{split}-{key}"


def cache_teacher_outputs(
    teacher: FrozenTeacher,
    dataset,
    task: str,
    cache_dir: str | Path,
    split: str = "train",
    top_k: int | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
):
    """The teacher's logits for every row of ``dataset``, from the cache or computed into it.

    Args:
        teacher: the frozen teacher.
        dataset: an encoded split (``datasets.Dataset`` with ``input_ids``, ``attention_mask``...).
        task: the task name the teacher answers for.
        cache_dir: the data cache folder (the entry goes beside the encoded splits).
        split: the split's name (part of the folder name, for people).
        top_k: keep only the ``K`` largest logits per row (and group), with their indices.
        batch_size: rows per teacher forward pass.
        device: where to run the teacher (default: where it is).

    Returns:
        ``(teacher_dataset, folder)``: a dataset of :func:`teacher_columns`, row-aligned with
        ``dataset``, and the cache folder.
    """
    if top_k is not None and top_k <= 0:
        raise ValueError(f"top_k must be positive, got {top_k}")
    settings = cache_settings(teacher, task, top_k)
    data_id = data_identity(dataset)
    folder = teacher_cache_folder(cache_dir, split, teacher.identity, data_id, settings)
    expected = {"teacher": teacher.identity, "data": data_id, "settings": settings, "rows": len(dataset)}
    hit = data_cache.load_entry(folder)
    if hit is not None:
        cached, meta = hit
        if all(meta.get(k) == v for k, v in expected.items()) and len(cached) == len(dataset):
            return cached, folder
        log.warning("teacher cache %s does not match this teacher, data and settings: rebuilding it", folder)
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    outputs = run_teacher(teacher, dataset, task, top_k=top_k, batch_size=batch_size, device=device)
    meta = {**expected, "data_cache": _data_cache_name(dataset), "columns": list(outputs)}
    data_cache.save_entry(folder, _to_dataset(outputs, settings["type"], top_k), meta)
    cached, _ = data_cache.load_entry(folder)
    return cached, folder


@torch.no_grad()
def run_teacher(teacher: FrozenTeacher, dataset, task: str, top_k: int | None = None, batch_size: int = 64, device=None) -> dict:
    """``{column: [row values]}`` of the teacher's float16 logits (see the module docstring), in
    the dataset's row order.

    The teacher reads the rows in batches of similar length (shortest first), so that padding
    costs little; each row's logits do not depend on its batch-mates (padding is masked).
    """
    if device is not None:
        teacher.to(device)
    device = next(teacher.parameters()).device
    columns = [c for c in INPUT_COLUMNS if c in dataset.column_names]
    source = dataset.with_format(None, columns=columns)
    groups = logit_groups(teacher.tasks[task]["type"])
    names = teacher_columns(teacher.tasks[task]["type"], top_k)
    out: dict[str, list] = {name: [None] * len(source) for name in names}
    token_counts = [len(ids) for ids in source["input_ids"]]
    order = sorted(range(len(source)), key=token_counts.__getitem__)
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in pad_inputs(source[indices]).items()}
        lengths = batch["attention_mask"].sum(-1).tolist() if "attention_mask" in batch else None
        logits = as_groups(teacher(batch, task).logits)
        for group, values in zip(groups, logits):
            values = values.float().cpu()
            if top_k is None:
                rows_out = values.half().numpy()
                if group != "logits":  # QA: keep the row's own tokens only
                    rows_out = [row[: int(n)] for row, n in zip(rows_out, lengths)]
                _place(out[f"teacher_{group}"], indices, rows_out)
            else:
                top_values, top_indices = _top_k(values, top_k)
                _place(out[f"teacher_{group}_topk_values"], indices, top_values.half().numpy())
                _place(out[f"teacher_{group}_topk_indices"], indices, top_indices.int().numpy())
    return out


def _place(column: list, indices: list[int], rows) -> None:
    for index, row in zip(indices, rows):
        column[index] = row


def pad_inputs(rows: dict) -> dict:
    """Right-pad a column dict of token lists into ``(B, S)`` long tensors (pad id 0; the
    attention mask hides it)."""
    length = max(len(ids) for ids in rows["input_ids"])
    return {
        name: torch.tensor([list(v) + [0] * (length - len(v)) for v in values], dtype=torch.long)
        for name, values in rows.items()
    }


def _top_k(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, K)`` largest values and indices; rows shorter than ``K`` padded with ``-inf`` at 0."""
    kept = min(k, values.shape[-1])
    top_values, top_indices = values.topk(kept, dim=-1)
    # float32 minimum (masked padding) becomes -inf in float16 anyway: make it explicit.
    top_values = top_values.masked_fill(top_values <= torch.finfo(torch.float32).min, float("-inf"))
    if kept < k:
        pad = k - kept
        top_values = torch.cat([top_values, top_values.new_full((len(values), pad), float("-inf"))], -1)
        top_indices = torch.cat([top_indices, top_indices.new_zeros((len(values), pad))], -1)
    return top_values, top_indices


def _to_dataset(outputs: dict, task_type: str, top_k: int | None):
    from datasets import Dataset, Features, Sequence, Value

    features = Features(
        {name: Sequence(Value("int32" if name.endswith("indices") else "float16")) for name in outputs}
    )
    return Dataset.from_dict({k: [np.asarray(v).tolist() for v in values] for k, values in outputs.items()}, features=features)


def _data_cache_name(dataset) -> str | None:
    files = getattr(dataset, "cache_files", None) or []
    return Path(files[0]["filename"]).parents[1].name if files else None


def attach(dataset, teacher_dataset):
    """``dataset`` with the teacher's columns added (row-aligned; lengths must agree)."""
    from datasets import concatenate_datasets

    if len(dataset) != len(teacher_dataset):
        raise ValueError(f"teacher cache has {len(teacher_dataset)} rows, the split {len(dataset)}")
    clashing = set(dataset.column_names) & set(teacher_dataset.column_names)
    if clashing:
        dataset = dataset.remove_columns(sorted(clashing))
    return concatenate_datasets([dataset, teacher_dataset], axis=1)
