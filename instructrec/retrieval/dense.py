"""Dense retrieval: passages and queries embedded by a transformer encoder, scored by cosine.

Embeddings are the attention-masked mean of the last hidden states, L2-normalised: the pooling
all-MiniLM-L6-v2 was trained with (its sentence-transformers config), so the packaged MiniLM works
as a retriever without fine-tuning. Search is exact (a matrix product and a top-k in torch): a
knowledge base of a few hundred thousand passages fits; FAISS would take over beyond that.

Encoding is the slow part on a CPU (about 1,000 SQuAD paragraphs a minute on 2 cores), so texts are
encoded in batches sorted by length (little padding), with a progress bar, and passage embeddings
are cached on disk under a key made of the model's identity, the settings and the texts: a changed
passage or model never reuses a stale vector.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from instructrec import backbones
from instructrec.retrieval.base import Retriever
from instructrec.retrieval.knowledge_base import KnowledgeBase


@torch.inference_mode()
def encode_texts(
    encoder,
    tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    max_length: int = 256,
    progress: bool = True,
    description: str = "encoding",
) -> torch.Tensor:
    """``(len(texts), hidden)`` float32 unit vectors: masked mean of the encoder's last layer."""
    from tqdm.auto import tqdm

    encoder.eval()
    device = next(encoder.parameters()).device
    lengths = [len(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # longest first: memory peaks early
    out = torch.empty(len(texts), encoder.config.hidden_size)
    batches = range(0, len(texts), batch_size)
    for start in tqdm(batches, desc=description, unit="batch", disable=not progress or len(batches) < 2):
        ids = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in ids], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(device)
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        out[ids] = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu()
    return out


class DenseRetriever(Retriever):
    """Cosine similarity between mean-pooled encoder embeddings of queries and passages.

    Args:
        kb: the passages (``with_title``: title prepended to each passage text).
        backbone: a name :func:`instructrec.backbones.load_encoder` resolves (default MiniLM).
        encoder, tokenizer: an already loaded pair instead (then ``model_id`` names it for the cache).
        cache_dir: where passage embeddings are kept between runs (``None``: no cache).
        max_length: tokens per text; longer passages are truncated.
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        backbone: str = "minilm-l6",
        *,
        encoder=None,
        tokenizer=None,
        model_id: str | None = None,
        cache_dir: str | Path | None = None,
        max_length: int = 256,
        batch_size: int = 32,
        with_title: bool = False,
        progress: bool = True,
        cache_queries: bool = False,
    ):
        self.kb = kb
        if encoder is None:
            encoder, tokenizer = backbones.load_encoder(backbone), backbones.load_tokenizer(backbone)
            model_id = model_id or f"{backbones.canonical(backbone)}|{backbones.describe(backbone)}"
        elif tokenizer is None:
            raise ValueError("an encoder needs its tokenizer")
        self.encoder, self.tokenizer = encoder.eval(), tokenizer
        self.max_length, self.batch_size, self.progress = max_length, batch_size, progress
        self._model_id, self._cache_dir, self._cache_queries = model_id, cache_dir, cache_queries
        texts = [f"{p.title}. {p.text}" if with_title and p.title else p.text for p in kb]
        self.passage_embeddings = self.embed(texts, "passages", cache=True)  # (N, hidden)

    def encode(self, texts: Sequence[str], description: str = "queries") -> torch.Tensor:
        return encode_texts(
            self.encoder,
            self.tokenizer,
            list(texts),
            batch_size=self.batch_size,
            max_length=self.max_length,
            progress=self.progress,
            description=description,
        )

    def score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        """``(Q, N)`` cosine similarities in [-1, 1]."""
        return (self.embed(queries, "queries", cache=self._cache_queries) @ self.passage_embeddings.T).numpy()

    def embed(self, texts: Sequence[str], description: str, *, cache: bool) -> torch.Tensor:
        """:meth:`encode`, through the on-disk cache when ``cache`` and the retriever has one."""
        if not cache or self._cache_dir is None or self._model_id is None:
            return self.encode(texts, description)
        key = hashlib.sha256("\n".join([self._model_id, f"mean|{self.max_length}", *texts]).encode()).hexdigest()[:24]
        path = Path(self._cache_dir) / f"embeddings-{key}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)
        embeddings = self.encode(texts, description)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(embeddings, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)  # never a half-written cache file
        return embeddings

