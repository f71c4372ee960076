"""Structure written in prose: a marker-free classification or qa instruction, read by rules.

The marker rules (:mod:`.parser`) read a text without markers as a bare generation prompt, and
the learned parser tags options word by word. People write choices, and questions about a passage,
in a few forms that say unambiguously what the fields are; :func:`read_prose` reads those (``auto``
mode tries it on marker-free texts before the learned parser):

* an enumeration of two or more options lettered in order from the first: ``(A) Mars (B)
  Jupiter`` or ``(a) ...`` anywhere, or ``A) ...`` / ``A. ...`` opening lines. Each option runs to
  the next label or to the end of its line; the rest of the text (the question before the list) is
  the ``text``. Numbered lists (``1. ...``, ``(1) ...``) are steps or points more often than
  choices, and are left alone.
* a choice sentence: a question or request opened by an auxiliary or a classification verb
  (``Is this review positive or negative?``, ``Classify the sentence as positive or negative.``,
  ``Is it about world, sports, business, or science?``) that ends with options joined by ``or``
  (with commas before, Oxford comma or not), or quoted options (``"great" or "awful"``). The
  sentence is the ``instruction``, the rest of the text the ``text``. The first option is as many
  words of the sentence before it as the longest other option has, stopping at a word that frames
  the question (``is``, ``about``, ``best``, ...); single-word lists take one word.
* a choice question followed by its options as a sentence of their own: ``What is the sentiment?
  Positive or negative?``, ``Which section would it appear in? World News, Sports, or Business?``
  (the list sentence ends with ``?``; every option, the first too, is at most
  :data:`MAX_OPTION_WORDS` words). Both sentences are the ``instruction``.
* Chinese: ``是正面还是负面？`` (``还是``, with ``、`` between further options).
* a passage, then a last paragraph that refers back to it and asks: ``<passage>\n\nWith reference
  to the above context, who ...?`` / ``Referring to the passage above, ...?`` / ``According to the
  text, ...?``: a qa instruction, the passage its ``context``, the rest of the paragraph its
  ``question``, which must end with a question mark (``From the above passage, a reasonable
  question would be:`` asks for a question: generation).

Anything else (no such form, options that repeat, nothing left to classify) gives None: the
caller keeps its own reading. Enumerations, choice sentences and the Chinese form are the ones the
issue names; the list after a question and the passage-then-question form were added after
reading the parser experiment's held-out failures (ag_news, xquad), and so are measured apart on
its unseen templates.
"""

from __future__ import annotations

import re

from instructrec.instructions.markers import guess_language
from instructrec.instructions.model import Instruction, InstructionError

MAX_OPTION_WORDS = 6
MAX_OPTIONS = 12
# Sentence openers of a choice sentence: auxiliaries of a yes/no question and classification verbs.
_OPENERS = frozenset(
    "is are was were does do did would will can could should which tell classify categorize categorise "
    "decide determine label identify choose select pick please".split()
)
# Words that frame a choice and so never belong to the first option ("... describes it best, a, b or c?"):
# verbs of being, prepositions, pronouns and determiners, and the words that name a label set.
_FRAME_WORDS = frozenset(
    "is are was were be been being "
    "about above across after against among around as at before behind below beneath beside between "
    "by concerning during for from in inside into like near of on onto over regarding to toward towards "
    "under with within "
    "either whether if it its this that these those "
    "best following one ones options labels categories classes category label".split()
)
_PAREN_LABEL = re.compile(r"\(([A-Za-z])\)\s*")
_LINE_LABEL = re.compile(r"(?m)^[ \t]*([A-Za-z])[.)][ \t]+")
_SENTENCE = re.compile(r"[^.?!\n]+(?:[.?!]+|$)")
_OPENER = re.compile(r"[\s\"'“”]*(\w+)")
_QUOTE = r'"([^"]+)"|\'([^\']+)\'|“([^”]+)”'  # an option in double, single or curly quotes
_QUOTED = re.compile(rf"^(?:{_QUOTE})$")
_ENDS_QUOTED = re.compile(rf"(?:{_QUOTE})$")
_ZH_CHOICE = re.compile(r"是([^，。？?！!\n]{1,40}?还是[^，。？?！!\n]{1,40}?)[？?]")
# Words that open the question a list sentence answers: the openers, and "what" / "how".
_LIST_QUESTION_OPENERS = _OPENERS | {"what", "how"}
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_REFERS_BACK = re.compile(
    r"(?i)(?:with reference to|in reference to|referring to|based on|according to|given|using|from)\s+"
    r"(?:the\s+)?(?:above\s+|preceding\s+|previous\s+)?"
    r"(?:context|passage|text|paragraph|article|excerpt|information|story)(?:\s+above)?\s*[,:]\s*"
)


def read_prose(text: str) -> Instruction | None:
    """The classification or qa instruction whose structure ``text`` writes in prose, or None."""
    if not isinstance(text, str) or not text.strip():
        return None
    for reader in (_enumerated, _choice_sentence, _list_after_question, _zh_choice, _passage_question):
        read = reader(text)
        if read is not None:
            return read
    return None


def _enumerated(text: str) -> Instruction | None:
    for pattern in (_PAREN_LABEL, _LINE_LABEL):
        labels = list(pattern.finditer(text))
        run = _consecutive_run(labels)
        if run is None:
            continue
        options, spans = [], []
        for i, label in enumerate(run):
            end = run[i + 1].start() if i + 1 < len(run) else len(text)
            line_end = text.find("\n", label.end())
            if line_end != -1 and line_end < end:
                end = line_end
            options.append(text[label.end() : end].strip())
            spans.append((label.start(), end))
        rest = _without(text, spans)
        built = _classification(text, options, rest, None)
        if built is not None:
            return built
    return None


def _consecutive_run(labels: list[re.Match]) -> list[re.Match] | None:
    """The first run of labels that counts from the first (A or a) one by one, if 2 or more."""
    for start, label in enumerate(labels):
        first = label.group(1)
        if first not in ("A", "a"):
            continue
        run = [label]
        for following in labels[start + 1 :]:
            if following.group(1) != _next_label(run[-1].group(1)):
                break
            run.append(following)
        if len(run) >= 2:
            return run
    return None


def _next_label(label: str) -> str:
    return chr(ord(label) + 1)


def _choice_sentence(text: str) -> Instruction | None:
    for sentence in _SENTENCE.finditer(text):
        opener = _OPENER.match(sentence.group())  # past a quote that closed the sentence before
        if opener is None or opener.group(1).lower() not in _OPENERS:
            continue
        start = sentence.start() + opener.start(1)
        options = _options_at_end(text[start : sentence.end()])
        if options is None:
            continue
        rest = _without(text, [(start, sentence.end())])
        built = _classification(text, options, rest, text[start : sentence.end()].strip())
        if built is not None:
            return built
    return None


def _list_after_question(text: str) -> Instruction | None:
    sentences = list(_SENTENCE.finditer(text))
    for question, listed in zip(sentences, sentences[1:]):
        opener = _OPENER.match(question.group())
        if opener is None or opener.group(1).lower() not in _LIST_QUESTION_OPENERS:
            continue
        if not question.group().rstrip().endswith("?") or not listed.group().rstrip().endswith("?"):
            continue
        if text[question.end() : listed.start()].strip():
            continue
        options = _whole_list(listed.group())
        if options is None:
            continue
        start = question.start() + opener.start(1)
        rest = _without(text, [(start, listed.end())])
        built = _classification(text, options, rest, " ".join(text[start : listed.end()].split()))
        if built is not None:
            return built
    return None


def _or_list(sentence: str) -> list[str] | None:
    """A sentence's comma pieces up to its last ``or`` and the piece after it (``x is a, b, or c?``
    -> ``["x is a", "b", "c"]``), or None without an ``or``."""
    body = sentence.strip().rstrip(".?!").rstrip()
    if " or " not in body:
        return None
    head, last = body.rsplit(" or ", 1)
    return [p.strip() for p in head.rstrip(",").split(",")] + [last.strip()]


def _whole_list(sentence: str) -> list[str] | None:
    """A sentence that is only options (``a, b, or c?``), every one of them short, else None."""
    items = _or_list(sentence)
    if items is None:
        return None
    quoted = [_unquote(item) for item in items]
    if all(q is not None for q in quoted):
        return quoted
    if any(not item or len(item.split()) > MAX_OPTION_WORDS for item in items):
        return None
    return items


def _passage_question(text: str) -> Instruction | None:
    breaks = list(_PARAGRAPH_BREAK.finditer(text))
    if not breaks:
        return None
    last = breaks[-1]
    context, paragraph = text[: last.start()].strip(), text[last.end() :].strip()
    refers = _REFERS_BACK.match(paragraph)
    if not context or refers is None:
        return None
    question = paragraph[refers.end() :].strip()
    if not question.endswith(("?", "？")) or "\n" in question:  # a question, not a request to write one
        return None
    try:
        return Instruction("qa", guess_language(text), {"question": question, "context": context,
                                                         "instruction": paragraph[: refers.end()].strip()})
    except InstructionError:
        return None


def _options_at_end(sentence: str) -> list[str] | None:
    """The options a sentence ends with: ``a, b, or c`` / ``a or b`` / quoted, else None."""
    pieces = _or_list(sentence)
    if pieces is None:
        return None
    items = pieces[1:]
    quoted = [_unquote(item) for item in items]
    if all(q is not None for q in quoted):
        first = _ENDS_QUOTED.search(pieces[0])
        options = ([_quoted_text(first)] if first else []) + quoted
        return options if len(options) >= 2 else None
    if any(len(item.split()) > MAX_OPTION_WORDS or not item for item in items):
        return None
    longest = max(len(item.split()) for item in items)
    first_words: list[str] = []
    for word in reversed(pieces[0].split()[1:]):  # the opener never belongs to an option
        if word.lower() in _FRAME_WORDS or len(first_words) == longest:
            break
        first_words.insert(0, word)
    options = ([" ".join(first_words)] if first_words else []) + items
    return options if len(options) >= 2 else None


def _unquote(item: str) -> str | None:
    match = _QUOTED.match(item.strip())
    return _quoted_text(match) if match else None


def _quoted_text(match: re.Match) -> str:
    return next(g for g in match.groups() if g)


def _zh_choice(text: str) -> Instruction | None:
    match = _ZH_CHOICE.search(text)
    if match is None:
        return None
    last_options = match.group(1).split("还是")
    options = [o.strip() for part in last_options for o in part.split("、")]
    sentence_start = max(text.rfind(p, 0, match.start()) for p in "。？?！!\n") + 1
    rest = _without(text, [(sentence_start, match.end())])
    return _classification(text, options, rest, text[sentence_start : match.end()].strip())


def _without(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with the spans cut out, the pieces joined by a line break where they were apart."""
    pieces, cursor = [], 0
    for start, end in sorted(spans):
        pieces.append(text[cursor:start])
        cursor = end
    pieces.append(text[cursor:])
    return "\n".join(p.strip() for p in pieces if p.strip())


def _classification(text: str, options: list[str], rest: str, wording: str | None) -> Instruction | None:
    if not rest or not 2 <= len(options) <= MAX_OPTIONS or len(set(options)) < len(options):
        return None
    if any(not option or "\n" in option for option in options):
        return None
    fields = {"text": rest, "options": options, **({"instruction": wording} if wording else {})}
    try:
        return Instruction("classification", guess_language(text), fields)
    except InstructionError:
        return None
