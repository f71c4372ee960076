"""Retrieval over a knowledge base: BM25, dense, their fusion, and multi-hop retrieval with traces.

Plain libraries (numpy, torch for the dense encoder; no Lightning): a reader module, the CLI and
experiments all build on them.

    kb = KnowledgeBase.from_squad("dev-v1.1.part2.json")
    retriever = HybridRetriever([BM25Retriever(kb), DenseRetriever(kb, cache_dir=".cache")])
    hits = retriever.search(["Which team won Super Bowl 50?"], k=5)[0]
"""

from instructrec.retrieval.base import Hit, Retriever, rank_of, recall_at
from instructrec.retrieval.knowledge_base import KnowledgeBase, Passage, split_passages

__all__ = [
    "Hit",
    "KnowledgeBase",
    "Passage",
    "Retriever",
    "rank_of",
    "recall_at",
    "split_passages",
]
