"""Labelled instructions for the learned parser, made without hand labelling.

An :class:`Example` is an instruction text with its task, its language and the character spans of
its fields (``text[start:end]`` is the value). The spans come from how the text was made:

* **promptsource** (``../shared/data/promptsource_templates``, rendered with real records through
  :mod:`instructrec.data.raw`): the record's values are located in the rendered prompt. A template
  whose prompt holds both the question and the context (and whose target is the answer) is ``qa``;
  one whose prompt holds the classified text *and* every answer choice is ``classification`` (the
  choices, where the prompt writes them, are the options); anything else (question generation,
  topics, a label question without its choices) is ``generation`` with the whole prompt as its
  ``prompt``. Templates over a QA set that ask a yes/no question about it are left out (no typed
  form fits). The TREC, HotpotQA and WikiHop files have no data here and are not used.
* **our templates** (:func:`~instructrec.instructions.templates.list_templates`): each instruction
  is written with :func:`render` (markers) and again without markers, through the patterns below.
* **paraphrases**: marker-free patterns ("Is this review positive or negative? ...", "Who wrote
  Hamlet, given that Hamlet is a play by Shakespeare?", "(A) ... (B) ...", "Translate this into
  German: ...", "Summarize the following paragraph in one sentence: ...").

Split by data set, so that held-out figures measure phrasings never trained on: the templates of
``ag_news`` (promptsource's seven and our ``agnews``) and of ``xquad`` (promptsource's
``xquad_xquad.en``, filled with SQuAD dev articles 24-48, which training never reads) are only in
the ``heldout`` split. Paraphrase patterns are split the same way: the ``HELDOUT`` patterns (and
the issue's own examples) are filled with held-out data and only evaluated on. Note that
promptsource's xquad templates reuse the wording of its squad ones: xquad measures new data in a
seen phrasing, ag_news new phrasings.

Plain Python (no torch): the raw readers are imported inside the functions that read data.
Everything is a function of ``seed``.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from instructrec.instructions.markers import MARKER_END, MARKER_WORDS, is_mostly_chinese
from instructrec.instructions.model import OPTIONAL_FIELDS, REQUIRED_FIELDS, Instruction, InstructionError
from instructrec.instructions.renderer import render

# Span labels: the Instruction's fields, with one "option" span per option of ``options``.
SPAN_FIELDS: tuple[str, ...] = (
    "question", "context", "text", "option", "answer", "prompt", "instruction", "source_language", "target_language",
)
# Fields that hold content (the rest is wording); the language is read from the wording.
CONTENT_FIELDS = frozenset({"question", "context", "text", "option", "answer", "prompt"})
# ag_news and xquad: the held-out sets of the corpus. rotten_tomatoes, adversarial_qa and quoref: the
# unseen sets of experiments/instruction_parser (promptsource templates shipped there, passed in as
# ``sets``), never trained on either.
HELDOUT_DATASETS = frozenset({"ag_news", "xquad", "rotten_tomatoes", "adversarial_qa", "quoref"})
SPLITS = ("train", "heldout")
# Training passages are cut to the sentences around their answer, at most this long (a CPU budget:
# short windows train fast). Held-out sets keep every length.
TRAIN_CONTEXT_CHARS = 500


@dataclass(frozen=True)
class Example:
    """One labelled instruction text.

    ``spans`` are ``(field, start, end)`` in text order; ``defaults`` are fields the text does not
    write (a translation's source language when only the target is named). ``dataset`` decides the
    split; ``origin`` says which template or pattern made it.
    """

    text: str
    task: str
    language: str
    spans: tuple[tuple[str, int, int], ...]
    dataset: str
    origin: str
    defaults: tuple[tuple[str, str], ...] = ()

    @property
    def split(self) -> str:
        return "heldout" if self.dataset in HELDOUT_DATASETS else "train"

    def values(self) -> list[tuple[str, str]]:
        return [(field, self.text[start:end]) for field, start, end in self.spans]

    def instruction(self) -> Instruction:
        """The gold :class:`Instruction` these spans stand for."""
        return instruction_from_spans(self.text, self.task, self.language, self.spans, dict(self.defaults))


# -- spans -> Instruction (shared with the learned parser's decoding) --------------------------------


def instruction_from_spans(
    text: str,
    task: str,
    language: str,
    spans: Iterable[tuple[str, int, int]],
    defaults: dict[str, str] | None = None,
) -> Instruction:
    """The Instruction that ``spans`` of ``text`` describe; :class:`InstructionError` when they form
    none (a required field missing). One rule for gold labels and predictions, so that a perfect
    tagging decodes to exactly the gold instruction: a field given in several pieces runs from the
    first piece to the last unless another content field lies between (then the longest piece
    wins); options are the ``option`` spans in order, repeats dropped; a generation without a
    ``prompt`` span is the whole text."""
    by_field: dict[str, list[tuple[int, int]]] = {}
    for field, start, end in spans:
        start, end = _strip_span(text, start, end)
        if end > start:
            by_field.setdefault(field, []).append((start, end))
    allowed = set(REQUIRED_FIELDS[task]) | set(OPTIONAL_FIELDS[task])
    fields: dict[str, Any] = {}
    for field, pieces in by_field.items():
        if field == "option":
            if "options" in allowed:
                options = [text[s:e] for s, e in pieces if "\n" not in text[s:e] and "\r" not in text[s:e]]
                fields["options"] = list(dict.fromkeys(options))
            continue
        if field not in allowed:
            continue
        others = [p for f, ps in by_field.items() if f != field for p in ps]
        start, end = _join(pieces, others)
        fields[field] = text[start:end]
    for field, value in (defaults or {}).items():
        if field in allowed and field not in fields:
            fields[field] = value
    if task == "generation" and "prompt" not in fields and "answer" not in fields:
        fields["prompt"] = text.strip()
    if task == "translation" and "source_language" not in fields and "text" in fields:
        fields["source_language"] = default_source_language(fields["text"], language)
    if not fields.get("options", True):
        del fields["options"]
    return Instruction(task, language, fields)


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _join(pieces: list[tuple[int, int]], others: list[tuple[int, int]]) -> tuple[int, int]:
    start, end = min(s for s, _ in pieces), max(e for _, e in pieces)
    if any(start <= s and e <= end for s, e in others):
        return max(pieces, key=lambda p: p[1] - p[0])
    return start, end


def default_source_language(text: str, language: str) -> str:
    """The source language of a translation that does not name it: the text's own."""
    chinese = is_mostly_chinese(text)
    if language == "zh":
        return "中文" if chinese else "英语"
    return "Chinese" if chinese else "English"


# -- writing texts with known spans -----------------------------------------------------------------


class _Writer:
    """Builds a text piece by piece, recording the span of every value it writes."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[tuple[str, int, int]] = []
        self.length = 0

    def write(self, piece: str, field: str | None = None) -> None:
        if field is not None:
            self.spans.append((field, self.length, self.length + len(piece)))
        self.parts.append(piece)
        self.length += len(piece)

    def text(self) -> str:
        return "".join(self.parts)


def _options_styles(language: str) -> dict[str, Callable[[Sequence[str]], list[tuple[str, bool]]]]:
    """Ways to list options in prose: each returns pieces, flagged True where a piece is an option."""

    def joined(sep: str, last: str) -> Callable:
        def style(options: Sequence[str]) -> list[tuple[str, bool]]:
            pieces: list[tuple[str, bool]] = []
            for i, option in enumerate(options):
                if i:
                    pieces.append((last if i == len(options) - 1 else sep, False))
                pieces.append((option, True))
            return pieces

        return style

    def quoted(options: Sequence[str]) -> list[tuple[str, bool]]:
        pieces: list[tuple[str, bool]] = []
        for i, option in enumerate(options):
            pieces.append(('"' if not i else ('" or "' if i == len(options) - 1 else '", "'), False))
            pieces.append((option, True))
        return pieces + [('"', False)]

    def lettered(options: Sequence[str]) -> list[tuple[str, bool]]:
        pieces: list[tuple[str, bool]] = []
        for i, option in enumerate(options):
            pieces += [(("" if not i else " ") + f"({string.ascii_uppercase[i]}) ", False), (option, True)]
        return pieces

    def lines(options: Sequence[str]) -> list[tuple[str, bool]]:
        pieces: list[tuple[str, bool]] = []
        for i, option in enumerate(options):
            pieces += [(f"\n{string.ascii_uppercase[i]}) " if i % 2 else "\n- ", False), (option, True)]
        return pieces + [("\n", False)]

    if language == "zh":
        return {"or": joined("、", "还是"), "list": joined("、", "或"), "slash": joined("/", "/")}
    return {
        "or": joined(", ", " or "),
        "oxford": joined(", ", ", or "),
        "quoted": quoted,
        "list": lettered,
        "lines": lines,
        "slash": joined(" / ", " / "),
    }


_FORMATTER = string.Formatter()


def fill(pattern: str, values: dict[str, Any], language: str, rng: random.Random) -> tuple[str, list] | None:
    """``pattern`` with its ``{field}`` (or ``{field:modifier}``) places filled; the text and the
    value spans, or None where a value is missing or a modifier leaves it empty.

    Modifiers: ``bare`` drops a final ``?``/``.``, ``lower`` lower-cases the first letter; for
    ``options`` the modifier picks the listing style (``or``, ``list``...; none: any style).
    """
    writer = _Writer()
    styles = _options_styles(language)
    for literal, name, spec, _ in _FORMATTER.parse(pattern):
        writer.write(literal)
        if name is None:
            continue
        value = values.get(name)
        if not value:
            return None
        if name == "options":
            style = styles.get(spec) or styles[rng.choice(sorted(styles))]
            for piece, is_option in style(value):
                writer.write(piece, "option" if is_option else None)
            continue
        value = str(value).strip()
        if "bare" in spec:
            value = value.rstrip("?？.。!！ ").strip()
        if "lower" in spec and value[:1].isupper() and not value[1:2].isupper():
            value = value[0].lower() + value[1:]
        if not value:
            return None
        writer.write(value, name)
    return writer.text(), writer.spans


# -- marker-free patterns ---------------------------------------------------------------------------
# Per task and language. {field} places take the instruction's values; options are listed in prose.
# Patterns write no marker (a marker word directly followed by a colon).

PATTERNS: dict[str, dict[str, list[str]]] = {
    "classification": {
        "en": [
            "Is this review {options}? {text}",
            "{text}\nIs the sentiment of this text {options}?",
            "Decide whether the following sentence is {options}.\n\n{text}",
            "Read the text and pick one of {options}.\n\n{text}",
            "{text}\n\nWhich of these describes it best, {options}?",
            "Choose the right label for the sentence below ({options}).\n{text}",
            'Here is a review. "{text}" Would you say it is {options}?',
            "Which category fits this text best? {options}\n\n{text}",
            "{text}\nPick the best label: {options:list}",
            "Classify the following sentence as {options}. {text}",
            "Tell me if this is {options}. {text}",
            "{text}\n\nIs that {options}?",
        ],
        "zh": [
            "这条评论是{options:or}？{text}",
            "{text}\n这段话的情感是{options:or}？",
            "请判断下面这句话属于{options:list}。\n{text}",
            "阅读下面的文本，从{options:list}中选一个。\n{text}",
        ],
    },
    "qa": {
        "en": [
            "{question:bare}, given that {context:bare}?",
            "{context}\n\n{question}",
            "Based on the passage below, {question:lower}\n\n{context}",
            "{context}\nUsing the text above, {question:lower}",
            "According to this paragraph, {question:lower}\n\n{context}",
            "Read this and answer the question. {context}\n{question}",
            "{question}\nUse the following passage to answer.\n{context}",
            "Here is a passage. {context}\n\nNow tell me, {question:lower}",
            "I read that {context:bare}. {question}",
        ],
        "zh": [
            "{context}\n\n根据上文，{question}",
            "阅读下面的文章，回答问题。{question}\n{context}",
            "{question}\n请根据这段话回答。{context}",
        ],
    },
    "translation": {
        "en": [
            "Translate this into {target_language}. {text}",
            "Translate the following {source_language} sentence into {target_language}.\n{text}",
            'How do you say "{text}" in {target_language}?',
            "{text}\n\nRender the sentence above in {target_language}.",
            "Please give me the {target_language} version of this {source_language} text. {text}",
            "Translate from {source_language} into {target_language}, please. {text}",
        ],
        "zh": [
            "把下面这句话译成{target_language}。{text}",
            "请把这段{source_language}翻译为{target_language}。\n{text}",
        ],
    },
    "generation": {
        "en": [
            "Summarize the following paragraph in one sentence. {prompt}",
            "Write a headline for this article.\n\n{prompt}",
            "Generate a question about this passage. {prompt}",
            "Paraphrase this sentence. {prompt}",
            "Explain in simple words what the following means. {prompt}",
            "Continue the story. {prompt}",
            "{prompt}\n\nWhat is a good title for the text above?",
            "Write a short poem about {prompt}.",
            "Give three reasons why people enjoy {prompt}.",
        ],
        "zh": [
            "用一句话总结下面这段话。{prompt}",
            "为这段文字写一个标题。\n{prompt}",
            "续写这个故事。{prompt}",
        ],
    },
}
# The issue's marker-free phrasings and the held-out patterns: evaluated on, never trained on.
HELDOUT_PATTERNS: dict[str, dict[str, list[str]]] = {
    "classification": {
        "en": [
            "Is this review {options:or}? {text}",
            "{text}\n\nWhich of the following best describes this text? {options:list}",
            "Would you label this article {options:or}? {text}",
            "Here is a news story. {text}\nIs it about {options:oxford}?",
            "Sort this text into one of these groups: {options:slash}. {text}",
        ],
    },
    "qa": {
        "en": [
            "{question:bare}, given that {context:bare}?",
            "{context}\n\nBased on that, {question:lower}",
            "Here is some background. {context}\nNow, {question:lower}",
            "{question}\nAnswer it using this text. {context}",
            "Take a look at this paragraph. {context}\n{question}",
        ],
    },
    "translation": {
        "en": [
            "Translate this into {target_language}. {text}",
            "Can you translate this {source_language} sentence to {target_language}? {text}",
            "{text}\n\nWhat is that in {target_language}?",
        ],
    },
    "generation": {
        "en": [
            "Summarize the following paragraph in one sentence. {prompt}",
            "Write a one-line summary of this news story.\n\n{prompt}",
            "Give me a catchy title for this article. {prompt}",
            "Come up with a question a student could answer from this text. {prompt}",
        ],
    },
}
# The issue's own examples (the colons after "sentence"/"German" are prose, not markers).
ISSUE_EXAMPLES: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "Is this review positive or negative? The battery died in a day.",
        "classification",
        [("option", "positive"), ("option", "negative"), ("text", "The battery died in a day.")],
    ),
    (
        "Who wrote Hamlet, given that Hamlet is a play by Shakespeare?",
        "qa",
        [("question", "Who wrote Hamlet"), ("context", "Hamlet is a play by Shakespeare")],
    ),
    (
        "Which planet is the largest? (A) Mars (B) Jupiter (C) Venus",
        "classification",
        [("text", "Which planet is the largest?"), ("option", "Mars"), ("option", "Jupiter"), ("option", "Venus")],
    ),
    (
        "Translate this into German: The cat sleeps on the sofa.",
        "translation",
        [("target_language", "German"), ("text", "The cat sleeps on the sofa.")],
    ),
    (
        "Summarize the following paragraph in one sentence: The city council met on Tuesday and voted "
        "to extend the bike lane network by twenty kilometres over the next three years.",
        "generation",
        [],
    ),
]


def issue_examples() -> list[Example]:
    """The issue's marker-free examples, labelled by locating their values in order."""
    examples = []
    for text, task, values in ISSUE_EXAMPLES:
        spans, cursor = [], 0
        for field, value in values:
            start = text.index(value, cursor)
            spans.append((field, start, start + len(value)))
            cursor = start + len(value)
        if task == "generation":
            spans = [("prompt", 0, len(text))]
        examples.append(Example(text, task, "en", tuple(spans), "issue", "issue"))
    return examples


def marker_free(instruction: Instruction, rng: random.Random, *, dataset: str, heldout_patterns: bool = False) -> Example | None:
    """``instruction`` rewritten without markers (its answer dropped), with its spans."""
    table = HELDOUT_PATTERNS if heldout_patterns else PATTERNS
    patterns = table.get(instruction.task, {}).get(instruction.language)
    if not patterns:
        return None
    values = dict(instruction.fields)
    values.pop("answer", None)
    pattern = rng.choice(patterns)
    if instruction.task == "classification" and len(values["options"]) > 6:
        return None
    filled = fill(pattern, values, instruction.language, rng)
    if filled is None:
        return None
    text, spans = filled
    task = instruction.task
    if task == "generation":
        spans = [("prompt", 0, len(text))]  # the whole request is the prompt
    kind = "heldout-pattern" if heldout_patterns else "pattern"
    return _checked(text, task, instruction.language, spans, dataset, f"{kind}/{task}/{patterns.index(pattern)}")


def _checked(text, task, language, spans, dataset, origin, defaults=()) -> Example | None:
    """An Example whose spans decode to a valid Instruction; None otherwise (e.g. repeated options)."""
    spans = tuple(sorted(spans, key=lambda s: (s[1], s[2])))
    if not text.strip() or any(text[s:e] != text[s:e].strip() or s == e for _, s, e in spans):
        return None
    example = Example(text, task, language, spans, dataset, origin, tuple(defaults))
    try:
        example.instruction()
    except InstructionError:
        return None
    return example


# -- our templates, rendered with markers ----------------------------------------------------------


def rendered(instruction: Instruction, *, dataset: str, origin: str) -> Example | None:
    """``render(instruction)`` with the span of each field, or None where escaping changed a value."""
    text = render(instruction)
    if "\\" in text:
        return None
    language, fields, spans, cursor = instruction.language, instruction.fields, [], 0

    def take(field: str, value: str, marker: str = "") -> None:
        nonlocal cursor
        if marker:
            cursor = text.index(marker, cursor) + len(marker)
        start = text.index(value, cursor)
        spans.append((field, start, start + len(value)))
        cursor = start + len(value)

    try:
        if "instruction" in fields:
            take("instruction", fields["instruction"])
        for field in REQUIRED_FIELDS[instruction.task] + ("answer",):
            if field not in fields:
                continue
            marker = ""
            if field in MARKER_WORDS[language]:
                marker = (MARKER_WORDS[language][field][0] + MARKER_END[language]).rstrip()
            if field == "options":
                for option in fields["options"]:
                    take("option", option, marker)
                    marker = ""
            else:
                take(field, fields[field], marker)
    except ValueError:
        return None
    example = _checked(text, instruction.task, language, spans, dataset, origin)
    if example is None or example.instruction() != instruction:
        return None
    return example


# -- promptsource ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptsourceSet:
    """A promptsource templates file and the records that fill it: ``<folder>/<file>.templates.yaml``
    (``folder`` None: the shared data's ``promptsource_templates``), ``read(data_root)`` the records,
    ``text_key`` the classified text's column (classification)."""

    file: str
    dataset: str
    kind: str  # "classification" or "qa"
    text_key: str | None
    read: Callable[[Path], list]
    folder: Path | None = None


def _promptsource_sets() -> list[PromptsourceSet]:
    from instructrec.data import raw

    squad1 = lambda d: raw.read_squad(d / "squad_v1.1_dev/dev-v1.1.part1.json")  # noqa: E731
    return [
        PromptsourceSet("glue_sst2", "sst2", "classification", "sentence",
                         lambda d: raw.read_sst2(d / "sst2_glue/glue_train_part1.tsv")),
        PromptsourceSet("financial_phrasebank_sentences_allagree", "financial_phrasebank", "classification", "sentence",
                         lambda d: raw.read_financial_phrasebank(d / "financial_phrasebank/Sentences_AllAgree.txt")),
        PromptsourceSet("squad", "squad", "qa", None, squad1),
        PromptsourceSet("squad_v2", "squad_v2", "qa", None, lambda d: raw.read_squad(d / "squad_v2.0_dev/dev-v2.0.json")),
        PromptsourceSet("ag_news", "ag_news", "classification", "text", lambda d: raw.read_agnews(d / "agnews/test.csv")),
        PromptsourceSet("xquad_xquad.en", "xquad", "qa", None,
                         lambda d: raw.read_squad(d / "squad_v1.1_dev/dev-v1.1.part2.json")),
    ]


def unseen_promptsource_sets(folder: Path) -> list[PromptsourceSet]:
    """The parser experiment's unseen sets: promptsource's ``rotten_tomatoes``, ``adversarial_qa``
    (dbidaf) and ``quoref`` templates, read from ``folder`` (``experiments/instruction_parser/
    unseen_templates``), filled with SST-2 dev sentences (the same Rotten Tomatoes reviews) and the
    SQuAD dev articles 24-48 of ``xquad`` (never in training)."""
    from instructrec.data import raw

    squad_part2 = lambda d: raw.read_squad(d / "squad_v1.1_dev/dev-v1.1.part2.json")  # noqa: E731
    return [
        PromptsourceSet("rotten_tomatoes", "rotten_tomatoes", "classification", "text",
                        lambda d: raw.read_sst2(d / "sst2_glue/glue_dev.tsv"), Path(folder)),
        PromptsourceSet("adversarial_qa_dbidaf", "adversarial_qa", "qa", None, squad_part2, Path(folder)),
        PromptsourceSet("quoref", "quoref", "qa", None, squad_part2, Path(folder)),
    ]


def promptsource_examples(
    data_root: Path, *, split: str, seed: int = 0, per_template: int = 100, max_context_chars: int | None = None,
    sets: Sequence[PromptsourceSet] | None = None,
) -> list[Example]:
    """Promptsource templates of the split's data sets (or of ``sets``, whatever their split), each
    filled with ``per_template`` records drawn with ``seed`` (QA records with contexts up to
    ``max_context_chars`` when given)."""
    from instructrec.instructions.promptsource import load_promptsource
    from instructrec.instructions.templates import TemplateNotApplicable

    examples: list[Example] = []
    if sets is None:
        sets = [spec for spec in _promptsource_sets() if (spec.dataset in HELDOUT_DATASETS) == (split == "heldout")]
    for spec in sets:
        records = spec.read(Path(data_root))
        if max_context_chars and spec.kind == "qa":
            records = [shorten_context(r, max_context_chars) for r in records]
        folder = Path(spec.folder) if spec.folder is not None else Path(data_root) / "promptsource_templates"
        templates = load_promptsource(folder / f"{spec.file}.templates.yaml")
        for number, template in enumerate(templates):
            if spec.kind == "qa" and template.answer_choices:
                continue  # a yes/no question about a passage: no typed form fits
            rng = random.Random(f"{seed}/{template.name}")
            made = 0
            for index in rng.sample(range(len(records)), len(records)):
                if made >= per_template:
                    break
                record = records[index]
                try:
                    instruction = template.apply(record, seed=seed, index=index)
                except TemplateNotApplicable:
                    continue
                except InstructionError:
                    continue
                example = _label_promptsource(spec, template, record, instruction, number)
                if example is not None:
                    examples.append(example)
                    made += 1
    return examples


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


def shorten_context(record: dict, max_chars: int) -> dict:
    """A QA record whose context is cut to whole sentences around its first answer, at most
    ``max_chars`` long (training reads short windows: the CPU budget), answers re-located."""
    context = record["context"]
    if len(context) <= max_chars:
        return record
    cuts = [0] + [m.end() for m in _SENTENCE_END.finditer(context) if 0 < m.end() < len(context)] + [len(context)]
    sentences = [context[a:b] for a, b in zip(cuts, cuts[1:]) if context[a:b].strip()]
    answers = record.get("answers") or []
    anchor = 0
    if answers:
        start = answers[0].get("answer_start")
        start = context.find(answers[0]["text"]) if start is None else start
        anchor = next((i for i, (a, b) in enumerate(zip(cuts, cuts[1:])) if a <= start < b), 0)
        anchor = min(anchor, len(sentences) - 1)
    first = last = anchor
    while True:
        grown = False
        for lo, hi in ((first - 1, last), (first, last + 1)):
            if 0 <= lo and hi < len(sentences) and len("".join(sentences[lo : hi + 1])) <= max_chars:
                first, last, grown = lo, hi, True
        if not grown:
            break
    short = "".join(sentences[first : last + 1]).strip()
    kept = [{"text": a["text"], "answer_start": short.find(a["text"])} for a in answers if a["text"] in short]
    if answers and not kept:
        return record
    return {**record, "context": short, "answers": kept}


def _label_promptsource(spec: PromptsourceSet, template, record: dict, instruction: Instruction, number: int) -> Example | None:
    prompt = instruction.fields.get("text") or instruction.fields.get("prompt")
    origin = template.name
    whole = [("prompt", 0, len(prompt))]
    if spec.kind == "classification":
        value = str(template.adapter(record)[spec.text_key]).strip()
        start = prompt.find(value)
        if start < 0:
            return None
        text_span = ("text", start, start + len(value))
        options = _locate_options(prompt, instruction.fields.get("options") or [], [text_span[1:]])
        if options is None:
            return _checked(prompt, "generation", "en", whole, spec.dataset, origin)
        return _checked(prompt, "classification", "en", [text_span, *options], spec.dataset, origin)
    question, context = record["question"].strip(), record["context"].strip()
    # What the template asks for is read from its Jinja, not guessed from values (an answer can
    # equal the article's title): a target that writes the question or the title is generation.
    target = template.jinja.split("|||", 1)[-1].replace(" ", "")
    generates = "{{question}}" in target or "title" in target
    q_at, c_at = prompt.find(question), prompt.find(context)
    overlap = q_at >= 0 and c_at >= 0 and q_at < c_at + len(context) and c_at < q_at + len(question)
    if q_at < 0 or c_at < 0 or overlap or generates:
        return _checked(prompt, "generation", "en", whole, spec.dataset, origin)
    spans = [("question", q_at, q_at + len(question)), ("context", c_at, c_at + len(context))]
    return _checked(prompt, "qa", "en", spans, spec.dataset, origin)


def _locate_options(prompt: str, choices: Sequence[str], taken: list[tuple[int, int]]) -> list | None:
    """Each choice's first whole-word occurrence (any case) outside ``taken``; None if one is absent."""
    spans, taken = [], list(taken)
    for choice in choices:
        for match in re.finditer(r"(?<!\w)" + re.escape(choice) + r"(?!\w)", prompt, re.IGNORECASE):
            if not any(match.start() < e and s < match.end() for s, e in taken):
                spans.append(("option", match.start(), match.end()))
                taken.append(match.span())
                break
        else:
            return None
    return sorted(spans, key=lambda s: s[1])


# -- our templates over real data -------------------------------------------------------------------


def _own_template_sets(data_root: Path) -> list[tuple[str, str, Callable[[], list], dict]]:
    """(data set, template name, records, template options)."""
    from instructrec.data import raw

    d = Path(data_root)
    return [
        ("sst2", "sst2", lambda: raw.read_sst2(d / "sst2_glue/glue_train_part1.tsv"), {}),
        ("financial_phrasebank", "financial_phrasebank",
         lambda: raw.read_financial_phrasebank(d / "financial_phrasebank/Sentences_AllAgree.txt"), {}),
        ("chnsenticorp", "chnsenticorp",
         lambda: [r for r in raw.read_chnsenticorp(d / "chnsenticorp_htl/ChnSentiCorp_htl_all.csv") if r["review"]], {}),
        ("squad", "squad", lambda: raw.read_squad(d / "squad_v1.1_dev/dev-v1.1.part1.json"), {}),
        ("cmrc2018", "cmrc2018", lambda: [r for r in raw.read_squad(d / "cmrc2018/cmrc2018_dev.json") if r["question"]], {}),
        ("babi", "babi", lambda: raw.read_babi_qa(d / "babi_en_1k/qa2_two-supporting-facts_train.txt", max_facts=8), {}),
        ("multi30k", "parallel", lambda: raw.read_parallel(d / "multi30k/train.en", d / "multi30k/train.de"),
         {"source_language": "English", "target_language": "German"}),
        ("multi30k", "parallel", lambda: raw.read_parallel(d / "multi30k/train.en", d / "multi30k/train.fr"),
         {"source_language": "English", "target_language": "French"}),
        ("multi30k", "parallel", lambda: raw.read_parallel(d / "multi30k/train.fr", d / "multi30k/train.en"),
         {"source_language": "French", "target_language": "English"}),
        ("multi30k", "parallel", lambda: raw.read_parallel(d / "multi30k/train.en", d / "multi30k/train.de"),
         {"source_language": "英语", "target_language": "德语", "language": "zh"}),
        ("ag_news", "agnews", lambda: raw.read_agnews(d / "agnews/test.csv"), {}),
    ]


def template_examples(
    data_root: Path, *, split: str, seed: int = 0, per_template: int = 200, max_context_chars: int | None = None
) -> list[Example]:
    """Our templates over real records: each instruction rendered with markers, and again
    marker-free (answer dropped) through :data:`PATTERNS`."""
    from instructrec.instructions.templates import get_template

    examples: list[Example] = []
    for dataset, name, read, options in _own_template_sets(data_root):
        if (dataset in HELDOUT_DATASETS) != (split == "heldout"):
            continue
        template = get_template(name, **options)
        records = read()
        if max_context_chars and records and "context" in records[0]:
            records = [shorten_context(r, max_context_chars) for r in records]
        rng = random.Random(f"{seed}/{name}/{sorted(options.items())}")
        for index in rng.sample(range(len(records)), min(per_template, len(records))):
            try:
                instruction = template.apply(records[index], seed=seed, index=index)
            except InstructionError:
                continue
            origin = f"template/{name}"
            for example in (
                rendered(instruction, dataset=dataset, origin=origin),
                marker_free(instruction, rng, dataset=dataset) if split == "train" else None,
            ):
                if example is not None:
                    examples.append(example)
    return examples


# -- paraphrases ------------------------------------------------------------------------------------

# Small built-in fillers: paraphrases (and the tests) work without the shared data.
OPTION_SETS: list[tuple[str, ...]] = [
    ("positive", "negative"), ("positive", "neutral", "negative"), ("yes", "no"), ("true", "false"),
    ("happy", "sad", "angry"), ("spam", "not spam"), ("formal", "informal"), ("good", "bad"),
    ("sports", "politics", "technology", "entertainment"), ("agree", "disagree", "unsure"),
    ("World", "Sports", "Business", "Sci/Tech"), ("relevant", "irrelevant"), ("toxic", "not toxic"),
]
# Several words per option (an option is one span, not one per word); drawn for half the examples.
MULTIWORD_OPTION_SETS: list[tuple[str, ...]] = [
    ("very positive", "somewhat positive", "neutral", "negative"), ("customer service", "billing", "technical support"),
    ("strongly agree", "agree", "disagree", "strongly disagree"), ("arts and culture", "health and medicine", "travel"),
    ("machine learning", "computer networks", "databases"), ("a good investment", "a bad investment"),
    ("fast food", "fine dining", "street food"), ("local news", "national politics", "the weather"),
]
ZH_OPTION_SETS: list[tuple[str, ...]] = [("正面", "负面"), ("积极", "消极", "中性"), ("是", "否")]
SENTENCES = [
    "The battery died in a day.", "A charming, funny and moving film.", "Profits fell sharply in the third quarter.",
    "The team won the championship after a dramatic final.", "I will never stay at this hotel again.",
    "Scientists discovered a new species of frog in the rainforest.", "The service was slow but the food was great.",
]
ZH_SENTENCES = ["房间很干净，服务也很好。", "这家酒店太吵了，不会再来。", "早餐一般，位置不错。"]
QA_PAIRS = [
    ("Who wrote Hamlet?", "Hamlet is a play by Shakespeare."),
    ("Where is the Eiffel Tower?", "The Eiffel Tower is a wrought-iron tower in Paris, France."),
    ("When did the war end?", "The war ended in 1945 after six years of fighting."),
    ("What do bees make?", "Bees collect nectar from flowers and turn it into honey."),
]
ZH_QA_PAIRS = [("谁写了《红楼梦》？", "《红楼梦》是曹雪芹的作品。"), ("长城在哪个国家？", "长城位于中国北方。")]
PARALLEL = ["The cat sleeps on the sofa.", "Two children are playing in the park.", "A man is riding a bicycle."]
LANGUAGES_EN = ["German", "French", "Spanish", "Italian", "Chinese", "Czech"]


def _fillers(data_root: Path | None, split: str, seed: int, max_context_chars: int | None) -> dict[str, list]:
    """Values for paraphrase patterns: real data where available, else the built-ins."""
    fillers: dict[str, list] = {
        "sentences": list(SENTENCES), "qa": list(QA_PAIRS), "parallel": list(PARALLEL), "passages": [c for _, c in QA_PAIRS],
    }
    if data_root is None or not Path(data_root).is_dir():
        return fillers
    from instructrec.data import raw

    d, rng = Path(data_root), random.Random(f"{seed}/fillers/{split}")

    def some(items: list, n: int = 400) -> list:
        return rng.sample(items, min(n, len(items)))

    if split == "heldout":
        agnews = raw.read_agnews(d / "agnews/test.csv")
        squad = raw.read_squad(d / "squad_v1.1_dev/dev-v1.1.part2.json")
        parallel = raw.read_parallel(d / "multi30k/test_2016_flickr.en", d / "multi30k/test_2016_flickr.de")
        sentences = [" ".join(p for p in (r.get("title"), r.get("description")) if p) for r in agnews]
    else:
        sentences = [r["sentence"] for r in raw.read_sst2(d / "sst2_glue/glue_train_part1.tsv") if len(r["sentence"]) > 20]
        squad = raw.read_squad(d / "squad_v1.1_dev/dev-v1.1.part1.json")
        parallel = raw.read_parallel(d / "multi30k/train.en", d / "multi30k/train.de")
    if split == "train" and max_context_chars:
        squad = [shorten_context(r, max_context_chars) for r in squad]
    return {
        "sentences": some(sentences),
        "qa": [(r["question"].strip(), r["context"].strip()) for r in some(squad)],
        "parallel": [r["text"] for r in some(parallel)],
        "passages": [r["context"].strip() for r in some(squad, 100)] + some(sentences, 100),
    }


def paraphrase_examples(
    *, split: str, seed: int = 0, count: int = 400, data_root: Path | None = None,
    max_context_chars: int | None = TRAIN_CONTEXT_CHARS,
) -> list[Example]:
    """Marker-free instructions from the patterns (``HELDOUT_PATTERNS`` for the held-out split,
    filled with held-out data; plus the issue's own examples there); training passages cut to
    ``max_context_chars`` (None: whole), as in :func:`build_corpus`."""
    fillers = _fillers(data_root, split, seed, max_context_chars)
    rng = random.Random(f"{seed}/paraphrases/{split}")
    heldout = split == "heldout"
    table = HELDOUT_PATTERNS if heldout else PATTERNS
    dataset = "paraphrase-heldout" if heldout else "paraphrase"
    examples: list[Example] = issue_examples() if heldout else []
    tasks = [(task, language) for task in table for language in table[task]]
    while len(examples) < count:
        task, language = tasks[len(examples) % len(tasks)]
        instruction = _paraphrase_instruction(task, language, fillers, rng)
        if instruction is None:
            continue
        example = marker_free(instruction, rng, dataset=dataset, heldout_patterns=heldout)
        if example is not None:
            examples.append(example)
        if not heldout and rng.random() < 0.25:  # marked forms of the same values
            marked = rendered(instruction, dataset=dataset, origin=f"render/{task}")
            if marked is not None:
                examples.append(marked)
    return examples[:count]


def _paraphrase_instruction(task: str, language: str, fillers: dict, rng: random.Random) -> Instruction | None:
    zh = language == "zh"
    try:
        if task == "classification":
            sets = ZH_OPTION_SETS if zh else MULTIWORD_OPTION_SETS if rng.random() < 0.5 else OPTION_SETS
            options = list(rng.choice(sets))
            text = rng.choice(ZH_SENTENCES if zh else fillers["sentences"])
            return Instruction(task, language, {"text": text, "options": options, "answer": rng.choice(options)})
        if task == "qa":
            question, context = rng.choice(ZH_QA_PAIRS if zh else fillers["qa"])
            return Instruction(task, language, {"question": question, "context": context})
        if task == "translation":
            if zh:
                return Instruction(task, language, {"source_language": "英语", "target_language": rng.choice(["德语", "法语", "中文"]), "text": rng.choice(PARALLEL)})
            source = "English"
            target = rng.choice([lang for lang in LANGUAGES_EN if lang != source])
            return Instruction(task, language, {"source_language": source, "target_language": target, "text": rng.choice(fillers["parallel"])})
        prompt = rng.choice(ZH_SENTENCES if zh else fillers["passages"])
        return Instruction(task, language, {"prompt": prompt, "answer": "..."} if rng.random() < 0.3 else {"prompt": prompt})
    except InstructionError:
        return None


# -- the corpus ------------------------------------------------------------------------------------


def build_corpus(
    split: str,
    *,
    seed: int = 0,
    data_root: Path | None = None,
    per_template: int = 100,
    paraphrases: int = 1000,
    max_context_chars: int | None = TRAIN_CONTEXT_CHARS,
) -> list[Example]:
    """Every example of ``split`` (``train`` or ``heldout``), shuffled with ``seed``.

    Without the shared data (``data_root`` None or absent) only the paraphrases are made.
    ``max_context_chars`` cuts training passages to the sentences around their answer (a CPU
    budget: short windows train fast; None keeps them whole); held-out sets keep every length.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    limit = max_context_chars if split == "train" else None
    examples = paraphrase_examples(split=split, seed=seed, count=paraphrases, data_root=data_root, max_context_chars=limit)
    if data_root is not None and Path(data_root).is_dir():
        examples += promptsource_examples(data_root, split=split, seed=seed, per_template=per_template, max_context_chars=limit)
        examples += template_examples(data_root, split=split, seed=seed, per_template=2 * per_template, max_context_chars=limit)
    random.Random(f"{seed}/shuffle/{split}").shuffle(examples)
    return examples
