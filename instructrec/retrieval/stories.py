"""Multi-hop retrieval over stories told in time order (bAbI): the facts each question needs.

In a story a later fact supersedes an earlier one ("Mary went to the garden" after "Mary went to the
kitchen"), and a question's object leads to a person ("Where is the milk?" -> "Mary got the milk
there." -> Mary's moves). So: BM25 where the latest matching fact wins (``RecencyPrior`` among
matches), hop 1 queries with the question, each later hop with the names in the facts selected so
far (:func:`~instructrec.retrieval.multihop.bridge_entities`), and a fact that matches no query term
is never selected. Each question may only select facts told before it.

The selected facts, in story order, are both the trace of an answer and a reader's context: on
bAbI 1k test, selecting ``[1, 10]`` (the latest fact naming the object, then up to ten about its
holder) keeps both supporting facts of every qa2 question in about 6 facts instead of the whole story.

The data cache keys readers' records by their options and by the retrieval code itself
(:func:`instructrec.data.raw.reader_code`), so a change here makes new cache entries by itself.
"""

from __future__ import annotations

import os
from typing import Sequence

from instructrec.babi import BabiStory, stories_of
from instructrec.retrieval.base import RecencyPrior
from instructrec.retrieval.bm25 import BM25Retriever
from instructrec.retrieval.knowledge_base import KnowledgeBase, babi_questions
from instructrec.retrieval.multihop import MultiHopResult, MultiHopRetriever, bridge_entities

PathLike = str | os.PathLike


def latest_fact_retriever(kb: KnowledgeBase, select: int | Sequence[int]) -> MultiHopRetriever:
    """The story retriever described above; ``select``: facts per hop (one number per hop)."""
    latest = RecencyPrior(BM25Retriever(kb), 1.0, only_matches=True)
    return MultiHopRetriever(latest, select=select, reformulate=bridge_entities, min_score=0.0)


def story_chains(source: PathLike | list[BabiStory], select: int | Sequence[int]) -> tuple[list[MultiHopResult], list[set[str]]]:
    """For each question of a bAbI file (or of its stories, read already), in file order: what
    :func:`latest_fact_retriever` selects among the facts told before it (passage ids
    ``s<story>:<line>``), and its supporting facts' ids."""
    stories = stories_of(source)
    kb = KnowledgeBase.from_babi(stories)
    questions, allowed, supporting = babi_questions(kb, stories)
    return latest_fact_retriever(kb, select).retrieve(questions, allowed=allowed), supporting
