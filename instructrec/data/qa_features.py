"""Extractive QA: (question, context, answer) examples -> doc-stride features with token labels.

The standard Hugging Face preprocessing, batched so that ``datasets.Dataset.map(batched=True)`` can
run it over plain columns. One example becomes one feature per window of its context:

    [CLS] question [SEP] context window [SEP] [PAD]...

Consecutive windows overlap by ``doc_stride`` tokens. Each feature is labelled with the token span
of the answer when the whole answer lies inside its window, and with the CLS index 0 otherwise (the
answer is in another window, straddles this window's edge, or the example has none: SQuAD 2.0
unanswerable questions, prediction input).

Offsets are kept for post-processing, with every entry that is not a context token (question,
special and padding tokens) set to :data:`NO_OFFSET`, so that a predicted span can only ever map
to context text and the column stays a rectangular int structure that Arrow can store.
"""

from __future__ import annotations

from instructrec.batch import NO_OFFSET

CLS_INDEX = 0  # the "no answer in this window" label: the first token, [CLS] / <s>
_CONTEXT = 1  # sequence id of the context: the question comes first


def answer_char_span(context: str, answer_text: str | None, answer_start: int | None = None) -> tuple[int, int] | None:
    """The character span ``(start, end)`` of ``answer_text`` in ``context``, end exclusive.

    ``answer_start`` is used when given and the text is found there; otherwise the first occurrence
    is taken. Returns ``None`` when the answer is empty or does not occur in the context: callers
    treat that as a rejected example, never as "no answer".
    """
    if not answer_text:
        return None
    if answer_start is not None and answer_start >= 0 and context.startswith(answer_text, answer_start):
        return answer_start, answer_start + len(answer_text)
    start = context.find(answer_text)
    return None if start < 0 else (start, start + len(answer_text))


def decode_span(offset_mapping, context: str, start_token: int, end_token: int) -> str:
    """The context text from the start of ``start_token`` to the end of ``end_token`` (inclusive).

    ``offset_mapping`` is one feature's offsets as :func:`prepare_qa_features` returns them (or as
    Arrow gives them back: lists). Raises ``ValueError`` for a span that is reversed or touches a
    token that is not a context token, so a question or special token never turns into an answer.
    """
    if end_token < start_token:
        raise ValueError(f"end token {end_token} is before start token {start_token}")
    start, end = offset_mapping[start_token], offset_mapping[end_token]
    for token, offset in ((start_token, start), (end_token, end)):
        if offset is None or offset[0] < 0:
            raise ValueError(f"token {token} is not a context token")
    return context[start[0] : end[1]]


def prepare_qa_features(
    tokenizer,
    questions: list[str],
    contexts: list[str],
    answer_starts: list[int | None],
    answer_texts: list[str | None],
    *,
    max_length: int = 384,
    doc_stride: int = 128,
    pad_to_max_length: bool = False,
) -> dict[str, list]:
    """Tokenise a batch of QA examples into doc-stride features and label the answer tokens.

    Args:
        tokenizer: a fast Hugging Face tokenizer (offset mappings) that pads on the right.
        questions, contexts: one per example; leading white space of a question is dropped (some
            SQuAD questions start with many spaces that would only use up the token budget).
        answer_starts, answer_texts: the answer's character start (a hint, see
            :func:`answer_char_span`) and text; ``None`` text for an example without an answer.
        max_length: tokens per feature, special tokens included.
        doc_stride: tokens shared by consecutive windows of one context.
        pad_to_max_length: pad every feature to ``max_length`` (else a collator pads per batch,
            on the right).

    Returns:
        Per feature (``n_features`` >= ``n_examples``): ``input_ids``, ``attention_mask``,
        ``token_type_ids`` (when the tokenizer makes them), ``offset_mapping`` (``(start, end)``
        character offsets into the context, :data:`NO_OFFSET` for non-context tokens),
        ``example_index`` (index into the input lists), ``start_positions`` and ``end_positions``
        (inclusive token indices of the answer, :data:`CLS_INDEX` when this window does not hold
        the whole answer). The answer span is the shortest run of whole tokens covering the answer
        text (stripped of white space), so a feature's decoded span contains the answer and equals
        it whenever the answer starts and ends on token boundaries.

    Raises:
        ValueError: an answer that does not occur in its context, or a question so long that the
            room left for context is not more than ``doc_stride`` while the context needs windows.
    """
    n = len(questions)
    if not len(contexts) == len(answer_starts) == len(answer_texts) == n:
        raise ValueError(
            f"columns differ in length: {n} questions, {len(contexts)} contexts, "
            f"{len(answer_starts)} answer starts, {len(answer_texts)} answer texts"
        )
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("prepare_qa_features needs a fast tokenizer: it reads offset mappings")
    if tokenizer.padding_side != "right":
        # Labels are absolute token positions with CLS at 0; left padding (here or in the collator,
        # which pads like the tokenizer) would shift every one of them.
        raise ValueError(f"the tokenizer pads on the {tokenizer.padding_side}; set padding_side='right' for QA")

    questions = [q.lstrip() for q in questions]
    spans = [_answer_span(i, c, s, t) for i, (c, s, t) in enumerate(zip(contexts, answer_starts, answer_texts))]
    _check_room(tokenizer, questions, contexts, max_length, doc_stride)

    encoded = tokenizer(
        questions,
        contexts,
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length" if pad_to_max_length else False,
    )
    example_index = list(encoded["overflow_to_sample_mapping"])
    offset_mapping, starts, ends = [], [], []
    for k, i in enumerate(example_index):
        offsets = encoded["offset_mapping"][k]
        sequence_ids = encoded.sequence_ids(k)
        offset_mapping.append([o if s == _CONTEXT else NO_OFFSET for o, s in zip(offsets, sequence_ids)])
        start, end = _label(offsets, sequence_ids, spans[i], i)
        starts.append(start)
        ends.append(end)

    features = {name: encoded[name] for name in ("input_ids", "attention_mask", "token_type_ids") if name in encoded}
    features.update(
        offset_mapping=offset_mapping, example_index=example_index, start_positions=starts, end_positions=ends
    )
    return features


def _answer_span(index: int, context: str, answer_start: int | None, answer_text: str | None):
    """The answer's character span stripped of white space, ``None`` for no answer."""
    if answer_text is None:
        return None
    span = answer_char_span(context, answer_text, answer_start)
    if span is None:
        raise ValueError(f"example {index}: answer {answer_text!r} does not occur in its context")
    start, end = span
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    if start == end:
        raise ValueError(f"example {index}: answer {answer_text!r} is only white space")
    return start, end


def _check_room(tokenizer, questions: list[str], contexts: list[str], max_length: int, doc_stride: int) -> None:
    """Fail clearly where the tokenizer would panic: a question that leaves no room for windows.

    Windows of the context hold ``max_length - specials - len(question)`` tokens and must advance,
    so that room must exceed ``doc_stride`` whenever the context does not fit whole.
    """
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    if doc_stride >= max_length - specials:
        raise ValueError(
            f"doc_stride={doc_stride} must be less than max_length={max_length} minus {specials} special tokens"
        )
    question_lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    for i, length in enumerate(question_lengths):
        room = max_length - specials - length
        if room > doc_stride:
            continue
        context_length = len(tokenizer(contexts[i], add_special_tokens=False)["input_ids"])
        if length + context_length + specials <= max_length:
            continue  # one window holds everything: nothing to stride over
        raise ValueError(
            f"example {i}: its question takes {length} tokens, leaving {max(room, 0)} of max_length={max_length} "
            f"for context windows, which must be more than doc_stride={doc_stride} (question {questions[i][:60]!r})"
        )


def _label(offsets: list, sequence_ids: list, span: tuple[int, int] | None, index: int) -> tuple[int, int]:
    """The (start, end) token labels of one window: the answer's tokens, or CLS twice."""
    if span is None or _CONTEXT not in sequence_ids:
        return CLS_INDEX, CLS_INDEX
    first = sequence_ids.index(_CONTEXT)
    last = len(sequence_ids) - 1 - sequence_ids[::-1].index(_CONTEXT)
    char_start, char_end = span
    if offsets[first][0] > char_start or offsets[last][1] < char_end:
        return CLS_INDEX, CLS_INDEX  # the answer is (partly) outside this window
    # The shortest run of whole tokens covering the answer: the tokens that overlap it.
    start = first
    while start <= last and offsets[start][1] <= char_start:
        start += 1
    end = last
    while end >= start and offsets[end][0] >= char_end:
        end -= 1
    if end < start:
        # Only characters the tokenizer drops (control or zero-width characters): no token to label.
        raise ValueError(f"example {index}: no token covers the answer at characters {char_start}:{char_end}")
    return start, end
