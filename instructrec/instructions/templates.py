"""Templates: raw data-set records -> :class:`Instruction`, phrased several ways.

A model trained on one fixed phrasing learns the phrasing, not the instruction. A template
therefore holds several *variants* (phrasings) of one task and picks one per example from
``(seed, index)`` with a stable hash, so that a run repeats exactly in any process, worker or
machine (Python's ``hash()`` is salted per process and would not). What may vary is the wording;
what may not is the label vocabulary: every example of a template gets the same options, in the
same order.

The ``Instruction`` model decides where phrasing can live: only classification has a free-text
field (``instruction``, the imperative it opens with), so the classification templates vary it;
QA and translation instructions are fully determined by their fields and have a single variant.
Promptsource templates (:mod:`instructrec.instructions.promptsource`) carry their phrasing in the
generated text itself.

Records are plain dicts as :mod:`instructrec.data.raw` reads them (each with ``source`` and
``record``, so that an error names the file and record). This module does not import the data
layer; the label vocabularies below are the data sets' label names, and the readers map their
label codes onto them.

Built-ins (``list_templates()``): ``squad``, ``cmrc2018``, ``babi``, ``sst2``, ``financial_phrasebank``,
``agnews``, ``chnsenticorp``, ``parallel`` (options ``source_language``, ``target_language``),
``classification`` (options ``text_keys``, ``options``, ...) and ``next_item`` (option ``language``:
recommendation as yes/no classification, see :class:`NextItemTemplate`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from instructrec.hashing import stable_hash
from instructrec.instructions.model import LANGUAGES, TASKS, Instruction, InstructionError

Record = Mapping[str, Any]

SST2_OPTIONS = ("negative", "positive")
FINANCIAL_PHRASEBANK_OPTIONS = ("negative", "neutral", "positive")
AGNEWS_OPTIONS = ("World", "Sports", "Business", "Sci/Tech")
CHNSENTICORP_OPTIONS = ("负面", "正面")


class TemplateNotApplicable(InstructionError):
    """The template has nothing to say about this record (e.g. a question-generation template on an
    unanswerable question). A loader may skip such records; it must not mistake them for valid."""


class Template:
    """One task over one kind of record, in ``len(variants)`` phrasings.

    Subclasses define :meth:`fields`, the instruction fields for a record in one variant.
    ``variants`` are whatever a subclass phrases with (strings for the built-ins; ``None`` means
    the single phrasing the renderer writes).
    """

    def __init__(self, name: str, task: str, language: str, variants: Sequence[Any]) -> None:
        if task not in TASKS:
            raise InstructionError(f"template {name!r}: unknown task {task!r}; expected one of {list(TASKS)}")
        if language not in LANGUAGES:
            raise InstructionError(
                f"template {name!r}: unknown language {language!r}; expected one of {list(LANGUAGES)}"
            )
        if not variants:
            raise InstructionError(f"template {name!r} has no variants")
        self.name = name
        self.task = task
        self.language = language
        self.variants = tuple(variants)

    def __repr__(self) -> str:
        kind = type(self).__name__
        return f"{kind}({self.name!r}, task={self.task!r}, language={self.language!r}, variants={len(self.variants)})"

    def variant_for(self, seed: int, index: int) -> int:
        """The variant example ``index`` gets under ``seed``: a function of the two alone."""
        return stable_hash("variant", seed, index) % len(self.variants)

    def apply(self, record: Record, *, seed: int, index: int, variant: int | None = None) -> Instruction:
        """The instruction for ``record``, example ``index`` of a run seeded with ``seed``.

        ``variant`` forces a phrasing instead of the seeded choice. Errors (a missing key, a label
        outside the options, an empty text) raise :class:`InstructionError` naming this template and
        the record's ``source``/``record``.
        """
        if variant is None:
            variant = self.variant_for(seed, index)
        elif not 0 <= variant < len(self.variants):
            raise InstructionError(f"template {self.name!r} has variants 0..{len(self.variants) - 1}, not {variant}")
        try:
            fields = self.fields(record, self.variants[variant], key=stable_hash("example", seed, index))
            return Instruction(self.task, self.language, fields)
        except InstructionError as error:
            reason = f"template {self.name!r}: {error.reason}"
            raise type(error)(reason, source=_source(record), record=_number(record)) from None
        except KeyError as error:
            keys = sorted(map(str, record))
            raise InstructionError(
                f"template {self.name!r}: the record has no {error.args[0]!r}; its keys are {keys}",
                source=_source(record),
                record=_number(record),
            ) from None

    def fields(self, record: Record, variant: Any, key: int) -> dict[str, Any]:
        """The instruction fields; ``key`` is a stable per-example number for any further choice."""
        raise NotImplementedError


def _source(record: Record) -> str | None:
    source = record.get("source")
    return None if source is None else str(source)


def _number(record: Record) -> int | None:
    number = record.get("record")
    return number if isinstance(number, int) else None


# -- the kinds of template -------------------------------------------------------------------------


class QATemplate(Template):
    """Extractive QA from SQuAD-style records (``question``, ``context``, ``answers``).

    The answer is the first reference answer; an unanswerable (``is_impossible``) or unlabelled
    question gets no ``answer`` field (prediction input). The other references stay in the record
    for scoring.
    """

    def __init__(self, name: str, language: str) -> None:
        super().__init__(name, "qa", language, [None])

    def fields(self, record: Record, variant: Any, key: int) -> dict[str, Any]:
        fields = {"question": record["question"].strip(), "context": record["context"].strip()}
        answers = record.get("answers") or []
        if answers and not record.get("is_impossible", False):
            fields["answer"] = answers[0]["text"].strip()
        return fields


class ClassificationTemplate(Template):
    """Text classification over a fixed label vocabulary.

    Args:
        text_keys: record keys whose non-empty values, joined by ``joiner``, are the text; a key
            the record lacks is skipped (AG News train has no title), but one must be present.
        options: the label names, in the order every example presents them.
        label_key: the record key holding the label (absent: prediction input, no answer).
        label_map: label as the record has it -> label name, for records read without one.
        instructions: the phrasings; ``None`` as one of them means "no imperative".
    """

    def __init__(
        self,
        name: str,
        language: str,
        *,
        text_keys: Sequence[str],
        options: Sequence[str],
        label_key: str = "label",
        label_map: Mapping[str, str] | None = None,
        instructions: Sequence[str | None] = (None,),
        joiner: str = " ",
    ) -> None:
        super().__init__(name, "classification", language, list(instructions))
        if not text_keys:
            raise InstructionError(f"template {name!r}: no text_keys")
        self.text_keys = tuple(text_keys)
        self.options = list(options)
        self.label_key = label_key
        self.label_map = dict(label_map or {})
        self.joiner = joiner

    def fields(self, record: Record, variant: str | None, key: int) -> dict[str, Any]:
        present = [k for k in self.text_keys if record.get(k) is not None]
        if not present:
            raise KeyError(" or ".join(self.text_keys))
        parts = [str(record[k]).strip() for k in present]
        fields: dict[str, Any] = {}
        if variant is not None:
            fields["instruction"] = variant
        fields["text"] = self.joiner.join(part for part in parts if part)
        if not fields["text"]:
            raise InstructionError(f"empty text in {list(self.text_keys)}")
        fields["options"] = list(self.options)
        if record.get(self.label_key) is not None:
            fields["answer"] = self._label(record[self.label_key])
        return fields

    def _label(self, value: Any) -> str:
        label = self.label_map.get(str(value), str(value))
        if label not in self.options:
            raise InstructionError(f"label {value!r} is not one of the options {self.options}")
        return label


class TranslationTemplate(Template):
    """Translation of aligned sentence pairs (``text``, and ``target`` as the answer)."""

    def __init__(self, name: str, *, source_language: str, target_language: str, language: str = "en") -> None:
        super().__init__(name, "translation", language, [None])
        self.source_language = source_language
        self.target_language = target_language

    def fields(self, record: Record, variant: Any, key: int) -> dict[str, Any]:
        fields = {
            "source_language": self.source_language,
            "target_language": self.target_language,
            "text": record["text"].strip(),
        }
        if record.get("target") is not None:
            fields["answer"] = record["target"].strip()
        return fields


class NextItemTemplate(Template):
    """Recommendation as pointwise classification: does ``candidate`` come next after ``history``?

    Recommendation then needs no task type of its own: a yes/no classification head learns it, so
    it trains beside any other task. A record holds ``history`` (item texts, oldest first),
    ``candidate`` (an item text) and ``label`` (True: it came next; absent: prediction input)::

        Will the user watch the candidate next?
        Text: The user watched, in order: Heat (1995; Action); Babe (1995; Comedy).
        Candidate: Toy Story (1995; Animation, Children's, Comedy)
        Options: yes, no

    A user asks for a *ranking* in the same words, the history as the text and the candidates as
    options (:meth:`ranking`); :meth:`pointwise` turns that into one instruction per candidate, whose
    text is the ranking's text plus the candidate line, so a ranked list is scored exactly as the
    training pairs were written. The wording speaks of watching (MovieLens); the variants vary only
    the question, and :meth:`pointwise` asks the first one.
    """

    QUESTIONS = {
        "en": (
            "Will the user watch the candidate next?",
            "Is the candidate the next movie this user watches?",
            "Given what the user watched, will they watch the candidate next?",
            "Does the candidate come next in this viewing history?",
        ),
        "zh": ("用户接下来会看这部候选电影吗？", "候选电影是这位用户接下来要看的吗？", "根据观看记录，用户下一部会看候选电影吗？"),
    }
    OPTIONS = {"en": ("yes", "no"), "zh": ("是", "否")}
    # (history opening, separator, closing, candidate line opening)
    WORDS = {"en": ("The user watched, in order: ", "; ", ".", "Candidate: "), "zh": ("用户按时间顺序看过：", "；", "。", "候选电影：")}
    RANKING = {"en": "Rank the candidates by how likely the user is to watch each next.", "zh": "按用户接下来观看的可能性给候选电影排序。"}

    def __init__(self, language: str = "en") -> None:
        if language not in self.QUESTIONS:
            raise InstructionError(f"template 'next_item': no wording in {language!r}; languages: {sorted(self.QUESTIONS)}")
        super().__init__("next_item", "classification", language, self.QUESTIONS[language])
        self.options = list(self.OPTIONS[language])

    def history_text(self, history: Sequence[str]) -> str:
        """The text of a history: its items in order (the text of a ranking instruction)."""
        if not history:
            raise InstructionError("the history is empty: a next-item instruction needs at least one item")
        opening, separator, closing, _ = self.WORDS[self.language]
        return opening + separator.join(item.strip() for item in history) + closing

    def pair_text(self, history_text: str, candidate: str) -> str:
        return f"{history_text}\n{self.WORDS[self.language][3]}{candidate.strip()}"

    def fields(self, record: Record, variant: str, key: int) -> dict[str, Any]:
        fields = {"instruction": variant, "text": self.pair_text(self.history_text(record["history"]), record["candidate"]),
                  "options": list(self.options)}
        if record.get("label") is not None:
            fields["answer"] = self.options[0] if record["label"] else self.options[1]
        return fields

    def ranking(self, history: Sequence[str], candidates: Sequence[str]) -> Instruction:
        """The listwise instruction a user writes: the history as text, the candidates as options."""
        fields = {"instruction": self.RANKING[self.language], "text": self.history_text(history),
                  "options": [c.strip() for c in candidates]}
        return Instruction("classification", self.language, fields)

    def pointwise(self, ranking: Instruction) -> list[Instruction]:
        """One yes/no instruction per option of a ranking instruction, in option order."""
        if ranking.task != "classification":
            raise InstructionError(f"a ranking instruction lists its candidates under Options:; this one reads as {ranking.task}")
        if ranking.language != self.language:
            raise InstructionError(f"a {ranking.language} ranking instruction given to the {self.language} next-item wording")
        text = ranking.fields["text"]
        return [Instruction("classification", self.language, {"instruction": self.variants[0], "text": self.pair_text(text, option),
                                                              "options": list(self.options)})
                for option in ranking.fields["options"]]


# -- the registry ----------------------------------------------------------------------------------

Factory = Callable[..., Template]
_REGISTRY: dict[str, Factory] = {}


def register_template(template: Template | Factory, *, name: str | None = None, replace: bool = False) -> None:
    """Make a template available to :func:`get_template`.

    ``template`` is a ready :class:`Template`, or a factory taking keyword options (registered under
    ``name``) for templates that need them, like ``parallel``'s languages. Registering a taken name
    is an error unless ``replace``.
    """
    if isinstance(template, Template):
        name = name or template.name
        factory = _fixed(template)
    elif name is None:
        raise InstructionError("a template factory needs a name")
    else:
        factory = template
    if name in _REGISTRY and not replace:
        raise InstructionError(f"a template named {name!r} is already registered (pass replace=True)")
    _REGISTRY[name] = factory


def _fixed(template: Template) -> Factory:
    def factory(**options: Any) -> Template:
        if options:
            raise TypeError(f"template {template.name!r} takes no options, got {sorted(options)}")
        return template

    return factory


def get_template(name: str, **options: Any) -> Template:
    """The registered template ``name``, built with ``options`` where it takes any."""
    if name not in _REGISTRY:
        raise InstructionError(f"unknown template {name!r}; known templates: {', '.join(list_templates())}")
    return _REGISTRY[name](**options)


def list_templates() -> list[str]:
    """The registered template names, sorted."""
    return sorted(_REGISTRY)


# -- built-ins -------------------------------------------------------------------------------------

SST2_INSTRUCTIONS = (
    "Classify the sentiment of the following text",
    "Is this review positive or negative?",
    "Decide whether the sentiment of this movie review is positive or negative",
    "What is the sentiment of the following sentence?",
)
FINANCIAL_PHRASEBANK_INSTRUCTIONS = (
    "Classify the sentiment of the following financial news",
    "Is this news positive, neutral or negative for the company?",
    "What is the sentiment of this sentence from a financial news article?",
    "Decide whether the following news is good, bad or neutral for investors",
)
AGNEWS_INSTRUCTIONS = (
    "Classify the topic of the following news article",
    "Which section of a newspaper does this article belong in?",
    "What is this news article about?",
    "Assign the following news to a topic",
)
CHNSENTICORP_INSTRUCTIONS = (
    "判断下面文本的情感",
    "这条酒店评论是正面的还是负面的？",
    "请判断以下评论的情感倾向",
    "分析这条酒店评论的情感",
)


def _classification(
    *,
    text_keys: Sequence[str],
    options: Sequence[str],
    label_key: str = "label",
    label_map: Mapping[str, str] | None = None,
    instructions: Sequence[str | None] = (None,),
    language: str = "en",
    joiner: str = " ",
    name: str = "classification",
) -> Template:
    return ClassificationTemplate(
        name,
        language,
        text_keys=text_keys,
        options=options,
        label_key=label_key,
        label_map=label_map,
        instructions=instructions,
        joiner=joiner,
    )


def _parallel(*, source_language: str, target_language: str, language: str = "en") -> Template:
    return TranslationTemplate(
        "parallel", source_language=source_language, target_language=target_language, language=language
    )


def _register_builtins() -> None:
    register_template(QATemplate("squad", "en"))
    register_template(QATemplate("cmrc2018", "zh"))
    register_template(QATemplate("babi", "en"))  # bAbI: the story so far is the context
    register_template(
        ClassificationTemplate(
            "sst2", "en", text_keys=["sentence"], options=SST2_OPTIONS, instructions=SST2_INSTRUCTIONS
        )
    )
    register_template(
        ClassificationTemplate(
            "financial_phrasebank",
            "en",
            text_keys=["sentence"],
            options=FINANCIAL_PHRASEBANK_OPTIONS,
            instructions=FINANCIAL_PHRASEBANK_INSTRUCTIONS,
        )
    )
    # The test set has title and description; the ALPS train subset only a description.
    register_template(
        ClassificationTemplate(
            "agnews", "en", text_keys=["title", "description"], options=AGNEWS_OPTIONS, instructions=AGNEWS_INSTRUCTIONS
        )
    )
    register_template(
        ClassificationTemplate(
            "chnsenticorp",
            "zh",
            text_keys=["review"],
            options=CHNSENTICORP_OPTIONS,
            instructions=CHNSENTICORP_INSTRUCTIONS,
        )
    )
    register_template(_parallel, name="parallel")
    register_template(_classification, name="classification")
    register_template(NextItemTemplate, name="next_item")


_register_builtins()
