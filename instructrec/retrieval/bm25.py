"""BM25 retrieval through ``bm25s`` (a maintained, fast implementation), with an analyser per language.

English (and the other Snowball languages): words of two or more letters, Snowball-stemmed, stop
words dropped. Why stemming: SQuAD questions paraphrase their paragraphs ("founded" / "founding"),
and stemmed English BM25 recalled the gold paragraph first for 81% of SQuAD dev questions where
unstemmed did worse.

Chinese: text has no spaces, and bm25s's ``\\w\\w+`` runs would make each clause one "word" (R@1
0.15 on CMRC2018). ``jieba`` segments it into words in its search mode (a long word also yields its
shorter words: 中华人民共和国 -> 中华, 人民, 共和国, ...), so a question that names a part of a
compound still matches it, and the character bigrams of the Han runs are added (words segmented
differently in question and passage still share bigrams); Chinese stop words are dropped. Chosen on
CMRC2018's trial split over jieba's precise and search modes, characters and bigrams alone
(``experiments/retrieval_cmrc``).

``language="auto"`` (the default) reads the passages: Chinese where Han characters are more than
half of their letters, else English.
"""

from __future__ import annotations

import logging
import re
from typing import Callable, Sequence

import numpy as np

from instructrec.instructions.markers import HAN_CHARACTERS, is_mostly_chinese
from instructrec.retrieval.base import Retriever
from instructrec.retrieval.knowledge_base import KnowledgeBase

Analyzer = Callable[[str], list[str]]  # text -> its words
_HAN_RUNS = re.compile(f"{HAN_CHARACTERS.pattern}+")
_WORD_RUNS = r"(?u)\b\w\w+\b"  # bm25s's own pattern: runs of two or more letters or digits
_ANALYZED_WORDS = r"(?u)[^ ]*\w[^ ]*"  # an analyser's word, if it holds a letter or digit (not "，")


def detect_language(texts: Sequence[str]) -> str:
    """``"chinese"`` where Han characters are more than half of the texts' letters, else ``"english"``."""
    return "chinese" if is_mostly_chinese("\n".join(texts)) else "english"


def chinese_words(text: str) -> list[str]:
    """``jieba``'s search-mode words (a long word also yields the shorter words inside it), then the
    character bigrams of each run of Han characters, so that a phrase segmented one way in the
    question and another in the passage still matches."""
    bigrams = [run[i : i + 2] for run in _HAN_RUNS.findall(text) for i in range(max(1, len(run) - 1))]
    return _jieba().lcut_for_search(text) + bigrams


def _jieba():
    try:
        import jieba
    except ImportError as error:  # a dependency of the package; only a broken install lacks it
        raise ImportError("Chinese retrieval segments words with jieba: pip install jieba") from error
    jieba.setLogLevel(logging.WARNING)  # not "Building prefix dict ..." on every first use
    return jieba


class BM25Retriever(Retriever):
    """Okapi BM25 (Lucene variant) over the passages of ``kb``.

    Args:
        kb: the passages; ``with_title`` prepends each passage's title to its indexed text.
        k1, b: the BM25 term-frequency saturation and length normalisation.
        language: ``"auto"`` (from the passages, see :func:`detect_language`), ``"chinese"``
            (``jieba`` words), a Snowball stemmer language (PyStemmer: ``"english"``, ``"german"``,
            ...), or ``None`` for unstemmed words.
        stopwords: a bm25s stop-word list name (``"en"``, ``"zh"``, ...), ``"auto"`` (the
            language's: ``"zh"`` for Chinese, ``"en"`` otherwise) or ``None``.
        analyzer: text -> words, replacing the language's segmentation and stemming (another
            segmenter, character n-grams); words are lower-cased and split at spaces, those
            without a letter or digit and stop words dropped.
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        language: str | None = "auto",
        stopwords: str | None = "auto",
        with_title: bool = False,
        analyzer: Analyzer | None = None,
    ):
        import bm25s

        self.kb = kb
        self._bm25s = bm25s
        texts = [f"{p.title}. {p.text}" if with_title and p.title else p.text for p in kb]
        if language == "auto":
            language = detect_language(texts)
        self.language = language
        if analyzer is None and language == "chinese":
            analyzer = chinese_words
        self._analyzer = analyzer
        self._stemmer = None
        if analyzer is None and language is not None:
            import Stemmer

            self._stemmer = Stemmer.Stemmer(language)
        if stopwords == "auto":
            stopwords = "zh" if language == "chinese" else "en"
        self._stopwords = stopwords or []
        self._index = bm25s.BM25(k1=k1, b=b)
        self._index.index(self._tokenize(texts, return_ids=True), show_progress=False)

    def _tokenize(self, texts: list[str], *, return_ids: bool):
        pattern = _WORD_RUNS
        if self._analyzer is not None:  # its words, space-separated, are bm25s's tokens
            texts, pattern = [" ".join(self._analyzer(text)) for text in texts], _ANALYZED_WORDS
        return self._bm25s.tokenize(
            texts, token_pattern=pattern, stopwords=self._stopwords, stemmer=self._stemmer,
            return_ids=return_ids, show_progress=False,
        )

    def score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        """``(Q, N)`` BM25 scores; a query with no indexed term scores 0 everywhere."""
        scores = np.zeros((len(queries), len(self.kb)), dtype=np.float32)
        for row, tokens in zip(scores, self._tokenize(list(queries), return_ids=False)):
            if tokens:
                row[:] = self._index.get_scores(tokens)
        return scores
