"""Promptsource (BigScience P3/T0) templates as registry templates.

Promptsource ships hundreds of human-written Jinja prompts per data set; loading them gives far
more phrasings than we would write by hand, and the same registry serves them: a file's templates
register as ``promptsource/<file>/<template name>`` (``<file>`` is the YAML file name without
``.templates.yaml``, e.g. ``promptsource/glue_sst2/review``).

Safety: the YAML is loaded with a ``yaml.SafeLoader`` subclass that only learns promptsource's two
tags (``!Template``, ``!TemplateMetadata``, both plain mappings here), and the Jinja runs in a
``SandboxedEnvironment``: template files are data, not code.

Rendering follows promptsource: the text before ``|||`` is the prompt, the text after it the target;
``answer_choices`` (``"a ||| b"``, possibly Jinja itself) gives the options. A template with answer
choices becomes a classification instruction (``text`` = prompt, ``options`` = choices, ``answer``
= target, which must be one of them); one without, a generation instruction (``prompt``,
``answer``). Promptsource's ``choice`` filter (a random pick) is deterministic here: it draws from
the example's ``(seed, index)``, like the variant choice. Undefined variables are errors, not empty
strings, so a record missing a column fails loudly (naming the template and record); a template
whose ``{% if %}`` leaves nothing for a record (question generation on an unanswerable question)
raises :class:`TemplateNotApplicable`.

Record keys. Promptsource reads Hugging Face ``datasets`` columns; our readers' records are adapted
per file (``ADAPTERS``, keyed by promptsource's ``dataset/subset``). File -> columns its Jinja reads
<- where they come from:

- ``glue_sst2``: ``sentence``, ``label`` (0/1) <- ``read_sst2`` (label name -> index);
- ``ag_news``: ``text``, ``label`` (0-3) <- ``read_agnews`` (``text`` = title + " " + description,
  as in HF ``ag_news``);
- ``financial_phrasebank_sentences_allagree``: ``sentence``, ``label`` (0-2) <-
  ``read_financial_phrasebank``;
- ``squad``, ``squad_v2``, ``xquad_xquad.en``, ``adversarial_qa_dbidaf``, ``quoref``: ``context``,
  ``question``, ``title``, ``answers`` as ``{"text": [...], "answer_start": [...]}`` <- ``read_squad``
  (its list of answers, regrouped); ``adversarial_qa`` also ``metadata.split`` (its templates skip
  the unanswered test split): ``validation`` unless the record says;
- ``rotten_tomatoes``: ``text``, ``label`` (0/1, SST-2's order) <- ``read_sst2`` (its ``sentence``;
  SST-2's sentences come from the same Rotten Tomatoes reviews);
- ``trec``, ``hotpot_qa_distractor``, ``wiki_hop_original``: their HF columns (``label_coarse``,
  ``label_fine``, ``context.sentences``, ``candidates``...); no reader here, so records must carry
  those columns already (they pass through unchanged).

Records that already have the HF shape (an ``int`` label, an ``answers`` dict) pass through too.
Each template's ``columns`` lists the record keys its Jinja reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml
from jinja2 import StrictUndefined, TemplateError, meta, pass_context
from jinja2.sandbox import SandboxedEnvironment

from instructrec.hashing import stable_hash
from instructrec.instructions.model import InstructionError
from instructrec.instructions.templates import (
    AGNEWS_OPTIONS,
    FINANCIAL_PHRASEBANK_OPTIONS,
    SST2_OPTIONS,
    Record,
    Template,
    TemplateNotApplicable,
    register_template,
)

SEPARATOR = "|||"
# Stands in for a "|||" inside a record's text while the rendering is split (as promptsource does);
# control characters, so that filters like `upper` leave it alone.
_PIPE_PROTECTOR = "\x00\x01\x02"
_RESERVED = ("answer_choices", "_chooser")


# -- YAML ------------------------------------------------------------------------------------------


class _PromptsourceLoader(yaml.SafeLoader):
    """SafeLoader plus promptsource's tags, read as plain mappings."""


def _mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict:
    return loader.construct_mapping(node, deep=True)


_PromptsourceLoader.add_constructor("!Template", _mapping)
_PromptsourceLoader.add_constructor("!TemplateMetadata", _mapping)


# -- Jinja -----------------------------------------------------------------------------------------


class _Chooser:
    """Promptsource's ``choice`` filter, made a function of the example: the n-th pick in one
    rendering depends on (seed, index, n) only."""

    def __init__(self, key: int) -> None:
        self.key = key
        self.calls = 0

    def pick(self, seq: Sequence[Any]) -> Any:
        seq = list(seq)
        if not seq:
            raise InstructionError("choice from an empty sequence")
        self.calls += 1
        return seq[stable_hash("choice", self.key, self.calls) % len(seq)]


@pass_context
def _choice(context: Any, seq: Sequence[Any]) -> Any:
    return context["_chooser"].pick(seq)


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters["choice"] = _choice
    return env


_ENV = _environment()


# -- record adapters -------------------------------------------------------------------------------


def _label_index(options: Sequence[str]) -> Callable[[Record], dict]:
    """Adapter: a label name (our readers) -> its index in the HF label order."""

    def adapt(record: Record) -> dict:
        example = dict(record)
        label = record.get("label")
        if isinstance(label, str):
            if label not in options:
                raise InstructionError(f"label {label!r} is not one of {list(options)}")
            example["label"] = list(options).index(label)
        return example

    return adapt


def _agnews(record: Record) -> dict:
    example = _label_index(AGNEWS_OPTIONS)(record)
    if "text" not in record:
        parts = [str(record.get(key) or "").strip() for key in ("title", "description")]
        example["text"] = " ".join(part for part in parts if part)
    return example


def _squad(record: Record) -> dict:
    example = dict(record)
    answers = record.get("answers", [])
    if isinstance(answers, list):  # ours: [{"text", "answer_start"}] -> HF columns
        example["answers"] = {
            "text": [a["text"] for a in answers],
            "answer_start": [a.get("answer_start") for a in answers],
        }
    return example


def _adversarial_qa(record: Record) -> dict:
    example = _squad(record)
    example.setdefault("metadata", {"split": "validation"})
    return example


def _rotten_tomatoes(record: Record) -> dict:
    example = _label_index(SST2_OPTIONS)(record)
    example.setdefault("text", record.get("sentence"))
    return example


ADAPTERS: Mapping[str, Callable[[Record], dict]] = {
    "glue/sst2": _label_index(SST2_OPTIONS),
    "rotten_tomatoes": _rotten_tomatoes,
    "adversarial_qa/dbidaf": _adversarial_qa,
    "quoref": _squad,
    "ag_news": _agnews,
    "financial_phrasebank/sentences_allagree": _label_index(FINANCIAL_PHRASEBANK_OPTIONS),
    "squad": _squad,
    "squad_v2": _squad,
    "xquad/xquad.en": _squad,
}


def _identity(record: Record) -> dict:
    return dict(record)


# -- the template ----------------------------------------------------------------------------------


class PromptsourceTemplate(Template):
    """One promptsource template: one Jinja variant (its phrasing varies through ``choice``)."""

    def __init__(
        self,
        name: str,
        *,
        jinja: str,
        answer_choices: str | None = None,
        adapter: Callable[[Record], dict] = _identity,
        language: str = "en",
        origin: str | None = None,
    ) -> None:
        super().__init__(name, "classification" if answer_choices else "generation", language, [jinja])
        self.jinja = jinja
        self.answer_choices = answer_choices
        self.adapter = adapter
        columns: set[str] = set()
        self._template = self._compile(jinja, origin, columns)
        self._choices = self._compile(answer_choices, origin, columns) if answer_choices else None
        self.columns = sorted(columns - set(_RESERVED))

    def _compile(self, source: str, origin: str | None, columns: set[str]) -> Any:
        """The compiled Jinja; adds the variables it reads to ``columns``."""
        try:
            tree = _ENV.parse(source)
            columns |= meta.find_undeclared_variables(tree)
            return _ENV.from_string(tree)
        except TemplateError as error:
            raise InstructionError(f"template {self.name!r} is not valid Jinja: {error}", source=origin) from None

    def fields(self, record: Record, variant: Any, key: int) -> dict[str, Any]:
        example = self.adapter(record)
        for name in _RESERVED:
            if name in example:
                raise InstructionError(f"the record may not have a key named {name!r}")
        example = {k: v.replace(SEPARATOR, _PIPE_PROTECTOR) if isinstance(v, str) else v for k, v in example.items()}
        chooser = _Chooser(key)
        choices = self._render_choices(example, chooser)
        prompt, target = self._render(example, choices, chooser)
        if choices is None:
            return {"prompt": prompt, "answer": target}
        if target not in choices:
            raise InstructionError(f"target {target!r} is not one of the answer choices {choices}")
        return {"text": prompt, "options": choices, "answer": target}

    def _render_choices(self, example: dict, chooser: _Chooser) -> list[str] | None:
        if self._choices is None:
            return None
        text = self._run(self._choices, example, chooser)
        return [_unprotect(choice).strip() for choice in text.split(SEPARATOR)]

    def _render(self, example: dict, choices: list[str] | None, chooser: _Chooser) -> tuple[str, str]:
        text = self._run(self._template, example | {"answer_choices": choices}, chooser)
        parts = [_unprotect(part).strip() for part in text.split(SEPARATOR)]
        if len(parts) > 2:
            raise InstructionError(f"the rendering has {len(parts) - 1} '{SEPARATOR}' separators; expected one")
        if not parts[0] or len(parts) < 2 or not parts[1]:
            raise TemplateNotApplicable("renders no prompt and target for this record (the template does not apply)")
        return parts[0], parts[1]

    def _run(self, template: Any, variables: dict, chooser: _Chooser) -> str:
        try:
            return template.render(**variables, _chooser=chooser)
        except InstructionError:
            raise
        except Exception as error:  # whatever the Jinja raised, report it with its place
            raise InstructionError(f"the Jinja failed: {type(error).__name__}: {error}") from error


def _unprotect(text: str) -> str:
    return text.replace(_PIPE_PROTECTOR, SEPARATOR)


# -- loading and registering -----------------------------------------------------------------------


def load_promptsource(path: str | os.PathLike, *, language: str = "en") -> list[PromptsourceTemplate]:
    """The templates of one promptsource ``*.templates.yaml`` file (not registered)."""
    source = str(path)
    document = _read_yaml(path)
    dataset = "/".join(str(document[key]) for key in ("dataset", "subset") if document.get(key))
    adapter = ADAPTERS.get(dataset, _identity)
    prefix = f"promptsource/{Path(path).name.removesuffix('.templates.yaml')}"
    templates = []
    for template_id, entry in document["templates"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("jinja"), str) or not entry.get("name"):
            raise InstructionError(f"template {template_id!r} has no 'jinja' text or no 'name'", source=source)
        templates.append(
            PromptsourceTemplate(
                f"{prefix}/{entry['name']}",
                jinja=entry["jinja"],
                answer_choices=entry.get("answer_choices"),
                adapter=adapter,
                language=language,
                origin=source,
            )
        )
    names = [template.name for template in templates]
    if len(set(names)) != len(names):
        repeated = sorted(n for n in set(names) if names.count(n) > 1)
        raise InstructionError(f"template names repeat: {repeated}", source=source)
    return templates


def _read_yaml(path: str | os.PathLike) -> dict:
    try:
        with open(path, encoding="utf-8") as file:
            loader = _PromptsourceLoader(file)
            try:
                document = loader.get_single_data()
            finally:
                loader.dispose()
    except yaml.YAMLError as error:
        raise InstructionError(f"not valid promptsource YAML: {error}", source=str(path)) from None
    if not isinstance(document, dict) or not isinstance(document.get("templates"), dict):
        raise InstructionError("not a promptsource templates file: no 'templates' mapping", source=str(path))
    return document


def register_promptsource(path: str | os.PathLike, *, language: str = "en") -> list[PromptsourceTemplate]:
    """Load and register a templates file (or every ``*.templates.yaml`` in a folder).

    Loading a file again replaces its templates, so this is safe to call more than once.
    """
    path = Path(path)
    files = sorted(path.glob("*.templates.yaml")) if path.is_dir() else [path]
    templates = [template for file in files for template in load_promptsource(file, language=language)]
    for template in templates:
        register_template(template, replace=True)
    return templates
