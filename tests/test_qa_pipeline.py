"""Retrieve-then-read: answers cite a retrieved passage, carry scores and the retrieval trace."""

from __future__ import annotations

import torch

from instructrec import backbones
from instructrec.models.qa_reasoning import QAReasoningModule
from instructrec.qa.pipeline import RetrieveAndRead
from instructrec.retrieval import KnowledgeBase, Passage
from instructrec.retrieval.bm25 import BM25Retriever
from instructrec.retrieval.multihop import MultiHopRetriever

KB = KnowledgeBase(
    Passage(f"p{i}", text)
    for i, text in enumerate(
        [
            "Mary got the milk there.",
            "John moved to the bedroom.",
            "Mary travelled to the hallway.",
            "Sandra went back to the kitchen.",
        ]
    )
)


def test_answers_cite_a_retrieved_passage_with_scores_and_trace():
    torch.manual_seed(0)
    reader = QAReasoningModule("tiny-bert").eval()
    pipeline = RetrieveAndRead(
        MultiHopRetriever(BM25Retriever(KB), hops=2), reader, backbones.load_tokenizer("tiny-bert"),
        passages=2, max_length=64, doc_stride=16, batch_size=3,
    )
    answers = pipeline(["Where is the milk?", "Where is John?"])
    assert [a.question for a in answers] == ["Where is the milk?", "Where is John?"]
    milk = answers[0]
    assert [(s.hop, s.passage_id) for s in milk.trace] == [(1, "p0"), (2, "p2")]
    assert milk.passage_id in {"p0", "p2"} and milk.text
    assert milk.text in KB[KB.position(milk.passage_id)].text
    assert milk.score == milk.candidates[0][1].score and milk.retrieval_score > 0
    assert all(a.score >= b.score for (_, a), (_, b) in zip(milk.candidates, milk.candidates[1:]))


def test_no_passage_gives_an_empty_answer():
    pipeline = RetrieveAndRead(
        MultiHopRetriever(BM25Retriever(KB), hops=1), QAReasoningModule("tiny-bert").eval(),
        backbones.load_tokenizer("tiny-bert"), max_length=64, doc_stride=16,
    )
    (answer,) = pipeline(["Where is the milk?"], allowed=[[]])
    assert (answer.text, answer.score, answer.passage_id, answer.trace) == ("", None, None, [])
