"""Answers from a knowledge base, each with the trace of the passages it came from: what
``instructrec ask`` runs (:mod:`instructrec.commands.ask`).

The knowledge base is built from the files (by extension: ``.jsonl`` documents, ``.json``
SQuAD-style paragraphs, ``.txt`` bAbI stories), searched by BM25 over ``--hops`` rounds of
:class:`~instructrec.retrieval.MultiHopRetriever`, and the selected passages are read by the
checkpoint's reader (:class:`~instructrec.models.QAReasoningModule`, loaded with
``weights_only=True``).
"""

from __future__ import annotations

from instructrec.paths import resolve_path
from instructrec.errors import MissingFileError
from instructrec.retrieval.knowledge_base import KnowledgeBase

READER_CLASS = "instructrec.models.QAReasoningModule"


def load_knowledge_base(paths: list[str], *, max_words: int = 100) -> KnowledgeBase:
    """One knowledge base from several files, each read by its extension."""
    bases = []
    for name in paths:
        path = resolve_path(name)
        if not path.is_file():
            raise MissingFileError(f"knowledge-base file {path} does not exist")
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            bases.append(KnowledgeBase.from_jsonl(path, max_words=max_words))
        elif suffix == ".json":
            bases.append(KnowledgeBase.from_squad(path))
        elif suffix == ".txt":
            bases.append(KnowledgeBase.from_babi(path))
        else:
            raise ValueError(f"{path}: unknown knowledge-base format {suffix!r}; expected .jsonl, .json (SQuAD) or .txt (bAbI)")
    kb = bases[0]
    for other in bases[1:]:
        kb = kb + other
    return kb


def build_pipeline(
    kb_files: list[str],
    ckpt: str,
    *,
    hops: int = 2,
    select: list[int] = (1,),
    stories: bool = False,
    passages: int = 3,
    max_words: int = 100,
    max_length: int = 384,
    doc_stride: int = 128,
):
    """A :class:`~instructrec.qa.pipeline.RetrieveAndRead` over the files' knowledge base with the
    checkpoint's reader (the options are ``instructrec ask``'s; see its ``--help``); without files,
    a reader of the contexts it is given (its ``read``)."""
    from instructrec import backbones
    from instructrec.models.checkpoints import load_module
    from instructrec.qa.pipeline import RetrieveAndRead
    from instructrec.retrieval.bm25 import BM25Retriever
    from instructrec.retrieval.multihop import MultiHopRetriever
    from instructrec.retrieval.stories import latest_fact_retriever

    reader = load_module(ckpt, default_class=READER_CLASS).eval()
    if not hasattr(reader, "head") or not hasattr(reader.hparams, "max_answer_length"):
        raise ValueError(f"{ckpt} is not an extractive QA reader checkpoint ({type(reader).__name__})")
    select = list(select) if len(select) > 1 else list(select) * hops  # passages per hop
    if not kb_files:  # a reader of given contexts only (RetrieveAndRead.read)
        retriever = None
    elif stories:
        retriever = latest_fact_retriever(load_knowledge_base(kb_files, max_words=max_words), select)
    else:
        retriever = MultiHopRetriever(BM25Retriever(load_knowledge_base(kb_files, max_words=max_words)), select=select, k=passages)
    return RetrieveAndRead(
        retriever,
        reader,
        backbones.load_tokenizer(reader.hparams.backbone),
        passages=passages,
        max_length=max_length,
        doc_stride=doc_stride,
        n_best=reader.hparams.n_best,
        max_answer_length=reader.hparams.max_answer_length,
        chain=stories,
    )


def build_generating_pipeline(
    kb_files: list[str],
    model: str,
    *,
    hops: int = 2,
    select: list[int] = (1,),
    passages: int = 3,
    max_words: int = 100,
    max_length: int = 512,
    system_prompt: str | None = None,
    max_new_tokens: int = 32,
):
    """A :class:`~instructrec.qa.pipeline.RetrieveAndGenerate` over the files' knowledge base with a
    GenerationModule checkpoint or a causal-LM backbone (``instructrec ask --generate``)."""
    from instructrec.models.generation import load_generator, trained_system_prompt
    from instructrec.qa.pipeline import RetrieveAndGenerate
    from instructrec.retrieval.bm25 import BM25Retriever
    from instructrec.retrieval.multihop import MultiHopRetriever

    kb = load_knowledge_base(kb_files, max_words=max_words)
    generator = load_generator(model, {"qa": {"type": "qa"}})
    generator.decoding.max_new_tokens = max_new_tokens
    select = list(select) if len(select) > 1 else list(select) * hops
    retriever = MultiHopRetriever(BM25Retriever(kb), select=select, k=passages)
    if system_prompt is None:
        system_prompt = trained_system_prompt(generator)
    return RetrieveAndGenerate(retriever, generator, passages=passages, max_length=max_length, system_prompt=system_prompt)


def answer_record(answer) -> dict:
    return {
        "question": answer.question,
        "answer": answer.text,
        "score": answer.score,
        "passage_id": answer.passage_id,
        "trace": [step.as_dict() for step in answer.trace],
    }
