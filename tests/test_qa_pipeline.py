"""Retrieve-then-read: answers cite a retrieved passage, carry scores and the retrieval trace."""

from __future__ import annotations

import torch

from instructrec import backbones
from instructrec.models.qa_reasoning import QAReasoningModule
from instructrec.qa.pipeline import RetrieveAndRead
from instructrec.retrieval import KnowledgeBase, Passage
from instructrec.retrieval.bm25 import BM25Retriever
from instructrec.retrieval.multihop import MultiHopRetriever
from instructrec.retrieval.stories import latest_fact_retriever

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


class Pointer:
    """A reader that points at one word (its first and last word piece) wherever it occurs, and
    records the rows it reads."""

    def __init__(self, tokenizer, word: str):
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        self.first, self.last, self.rows = pieces[0], pieces[-1], []

    def __call__(self, input_ids, **_):
        self.rows += input_ids.tolist()
        return 10.0 * (input_ids == self.first).float(), 10.0 * (input_ids == self.last).float()


def test_a_chain_is_read_as_one_text_in_knowledge_base_order():
    tokenizer = backbones.load_tokenizer("tiny-bert")
    reader = Pointer(tokenizer, "hallway")
    pipeline = RetrieveAndRead(latest_fact_retriever(KB, [1, 10]), reader, tokenizer, max_length=64, doc_stride=16,
                               chain=True)
    (answer,) = pipeline(["Where is the milk?"])
    assert [(s.hop, s.passage_id) for s in answer.trace] == [(1, "p0"), (2, "p2")]  # Mary's facts only
    assert len(reader.rows) == 1  # one window holding both facts, in story order
    read = tokenizer("Where is the milk?", "Mary got the milk there. Mary travelled to the hallway.")["input_ids"]
    assert reader.rows[0][: len(read)] == read
    assert (answer.text, answer.passage_id, answer.score) == ("hallway", "p2", 20.0)
    assert all(passage in {"p0", "p2"} for passage, _ in answer.candidates)
