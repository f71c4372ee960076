"""Readers of the raw public data sets into plain dict records.

Templates (:mod:`instructrec.instructions.templates`) turn these records into instructions, so the
readers only have to get the data out of its file format faithfully: no torch, no tokenizer, no
cleaning beyond stripping the white space around a field. Every record carries

- ``id``: the data set's own id where it has one (SQuAD, CMRC2018), else ``"<file name>:<record>"``;
- ``source``: the file it came from (``str``);
- ``record``: where in that file: the 1-based line number the record starts on for line-based
  files (CSV/TSV, FinancialPhraseBank, parallel text; a header is line 1), the 1-based question
  number for SQuAD-style JSON.

so that a template or a loader can say exactly which record is bad. A malformed record raises
:class:`InstructionError` with that location; nothing is dropped silently. An *empty* text is not
malformed for the reader (ChnSentiCorp has one empty review, and the published row counts include
it); the template that cannot build an instruction from it says so.

Labels are returned as names where the data set defines them (the ``*_LABELS`` constants below):
``read_sst2`` gives ``"negative"``/``"positive"``, not ``"0"``/``"1"``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from instructrec.instructions.model import InstructionError
from instructrec.hashing import file_digest, stable_hash
from instructrec.textio import decode_text
from instructrec.instructions.templates import (
    AGNEWS_OPTIONS,
    CHNSENTICORP_OPTIONS,
    FINANCIAL_PHRASEBANK_OPTIONS,
    SST2_OPTIONS,
)

Record = dict[str, Any]
PathLike = str | os.PathLike

# Label codes as written in the files -> label names. The names (and their order) are the
# templates' options: one list per data set, kept in the instruction layer.
SST2_LABELS: Mapping[str, str] = dict(zip(("0", "1"), SST2_OPTIONS))
AGNEWS_LABELS: Mapping[str, str] = dict(zip(("1", "2", "3", "4"), AGNEWS_OPTIONS))
CHNSENTICORP_LABELS: Mapping[str, str] = dict(zip(("0", "1"), CHNSENTICORP_OPTIONS))
FINANCIAL_PHRASEBANK_LABELS: tuple[str, ...] = FINANCIAL_PHRASEBANK_OPTIONS


# -- SQuAD-style JSON ------------------------------------------------------------------------------


def read_squad(path: PathLike) -> list[Record]:
    """One record per question of a SQuAD v1.1/v2.0 (or CMRC2018) JSON file.

    Keys: ``id, title, context, question, answers`` (a list of ``{"text", "answer_start"}``) and
    ``is_impossible`` (``False`` where the file has no such flag). ``record`` is the question's
    1-based position in the file.
    """
    source = str(path)
    data = _load_json(path)
    records: list[Record] = []
    for article in data:
        for paragraph in _get(article, "paragraphs", list, source, len(records) + 1):
            context = _get(paragraph, "context", str, source, len(records) + 1)
            for qa in _get(paragraph, "qas", list, source, len(records) + 1):
                records.append(_squad_record(qa, article, context, source, len(records) + 1))
    return records


def _load_json(path: PathLike) -> list:
    # JSON is UTF-8 (RFC 8259); a byte-order mark is tolerated.
    text = decode_text(Path(path).read_bytes(), "utf-8", str(path), hint="save the file as UTF-8", lines_are_records=False)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InstructionError(f"not valid JSON: {error}", source=str(path)) from None
    except RecursionError:
        raise InstructionError("not valid JSON: nested too deeply", source=str(path)) from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise InstructionError("not a SQuAD-style file: no top-level 'data' list", source=str(path))
    return document["data"]


def _get(obj: Any, key: str, kind: type, source: str, record: int) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind):
        raise InstructionError(f"missing or malformed {key!r} (expected {kind.__name__})", source=source, record=record)
    return value


def _squad_record(qa: Any, article: dict, context: str, source: str, number: int) -> Record:
    question = _get(qa, "question", str, source, number)
    answers = _get(qa, "answers", list, source, number)
    for answer in answers:
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise InstructionError(f"malformed answer {answer!r}", source=source, record=number)
    impossible = bool(qa.get("is_impossible", False))
    if impossible and answers:
        raise InstructionError("question is marked impossible but has answers", source=source, record=number)
    return {
        "id": str(qa.get("id", f"{Path(source).name}:{number}")),
        "title": str(article.get("title", "")),
        "context": context,
        "question": question.strip(),
        "answers": [{"text": a["text"], "answer_start": a.get("answer_start")} for a in answers],
        "is_impossible": impossible,
        "source": source,
        "record": number,
    }


# -- CSV / TSV classification ----------------------------------------------------------------------


def read_delimited(
    path: PathLike,
    *,
    text_columns: Sequence[str | int],
    label_column: str | int,
    delimiter: str | None = None,
    header: bool | Sequence[str] = True,
    encoding: str = "utf-8",
    label_map: Mapping[str, str] | None = None,
    quotechar: str | None = '"',
) -> list[Record]:
    """Classification rows of a CSV/TSV file, read with the ``csv`` module (quoted fields may hold
    delimiters, doubled quotes and newlines).

    Args:
        text_columns: the columns kept as text, each under its own name (stripped).
        label_column: the label column; its value is stored under ``"label"``.
        delimiter: ``None`` picks ``,`` for ``.csv`` and a tab for ``.tsv``.
        header: ``True``: the first line names the columns; ``False``: no header, columns are
            named by their 0-based position (``int``); a list of names: no header line, these names.
        label_map: label as written -> label name; a label not in it is an error.
        quotechar: ``None`` reads quote characters literally (GLUE-style TSV that never quotes).
    """
    source = str(path)
    rows = _rows(path, delimiter or _delimiter_for(path), encoding, quotechar)
    names, rows = _split_header(rows, header, source)
    missing = [column for column in [*text_columns, label_column] if column not in names]
    if missing:
        raise InstructionError(f"no column(s) {missing}; the columns are {names}", source=source, record=1)
    records: list[Record] = []
    for line, row in rows:
        if len(row) != len(names):
            raise InstructionError(
                f"expected {len(names)} fields ({', '.join(map(str, names))}), got {len(row)}",
                source=source,
                record=line,
            )
        values = dict(zip(names, row))
        record: Record = {"id": f"{Path(source).name}:{line}"}
        record.update({column: values[column].strip() for column in text_columns})
        record["label"] = _label(values[label_column].strip(), label_map, source, line)
        record.update(source=source, record=line)
        records.append(record)
    return records


def _delimiter_for(path: PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return ","
    if suffix == ".tsv":
        return "\t"
    raise InstructionError(f"cannot tell the delimiter from the suffix {suffix!r}; pass delimiter=", source=str(path))


def _rows(path: PathLike, delimiter: str, encoding: str, quotechar: str | None) -> list[tuple[int, list[str]]]:
    """(line the row starts on, fields) for every non-blank row."""
    quoting = csv.QUOTE_MINIMAL if quotechar else csv.QUOTE_NONE
    text = decode_text(Path(path).read_bytes(), encoding, str(path), hint=_ENCODING_HINT)
    rows = []
    # newline="": the csv module sees every line end (CRLF, CR, LF) and quoted ones inside fields.
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=delimiter, quotechar=quotechar or '"', quoting=quoting, strict=True
    )
    start = 1
    try:
        for row in reader:
            if row:  # a blank line is no record
                rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as error:
        raise InstructionError(f"malformed row: {error}", source=str(path), record=start) from None
    return rows


def _split_header(rows: list, header: bool | Sequence[str], source: str) -> tuple[list, list]:
    """The column names and the data rows."""
    if header is True:
        if not rows:
            raise InstructionError("empty file: no header line", source=source, record=1)
        return [name.strip() for name in rows[0][1]], rows[1:]
    if header is False:
        return list(range(len(rows[0][1]))) if rows else [], rows
    return list(header), rows


def _label(value: str, label_map: Mapping[str, str] | None, source: str, line: int) -> str:
    if not value:
        raise InstructionError("empty label", source=source, record=line)
    if label_map is None:
        return value
    if value not in label_map:
        raise InstructionError(f"unknown label {value!r}; known: {list(label_map)}", source=source, record=line)
    return label_map[value]


def read_sst2(path: PathLike) -> list[Record]:
    """GLUE SST-2 TSV (``sentence<TAB>label`` with a header): keys ``sentence``, ``label`` (a name)."""
    return read_delimited(path, text_columns=["sentence"], label_column="label", delimiter="\t", label_map=SST2_LABELS)


def read_agnews(path: PathLike) -> list[Record]:
    """AG News: the official ``test.csv`` (``label,title,description``, labels 1-4) gives keys
    ``title, description, label``; the ALPS ``.tsv`` subset (``text<TAB>Label``, no header, label
    names, no title) gives ``description, label``. Labels are names (:data:`AGNEWS_LABELS`)."""
    if Path(path).suffix.lower() == ".tsv":
        names = {name: name for name in AGNEWS_LABELS.values()}
        return read_delimited(
            path, text_columns=["description"], label_column="label", header=["description", "label"], label_map=names
        )
    return read_delimited(path, text_columns=["title", "description"], label_column="label", label_map=AGNEWS_LABELS)


def read_chnsenticorp(path: PathLike) -> list[Record]:
    """ChnSentiCorp CSV (``label,review``): keys ``review``, ``label`` (负面/正面)."""
    return read_delimited(path, text_columns=["review"], label_column="label", label_map=CHNSENTICORP_LABELS)


# -- line-based formats ----------------------------------------------------------------------------


def read_financial_phrasebank(path: PathLike, *, encoding: str | None = None) -> list[Record]:
    """FinancialPhraseBank ``sentence@label`` lines: keys ``sentence``, ``label``.

    The sentence is everything before the *last* ``@`` (sentences may contain one). Without
    ``encoding`` the file is read as UTF-8 (AllAgree) and, failing that, latin-1 (the others).
    """
    source = str(path)
    records: list[Record] = []
    for line, text in _lines(path, encoding):
        if not text.strip():
            continue
        sentence, at, label = text.rpartition("@")
        if not at:
            raise InstructionError("no '@' before the label", source=source, record=line)
        label = label.strip()
        if label not in FINANCIAL_PHRASEBANK_LABELS:
            raise InstructionError(
                f"unknown label {label!r}; known: {list(FINANCIAL_PHRASEBANK_LABELS)}", source=source, record=line
            )
        records.append(
            {
                "id": f"{Path(source).name}:{line}",
                "sentence": sentence.strip(),
                "label": label,
                "source": source,
                "record": line,
            }
        )
    return records


def read_parallel(source_path: PathLike, target_path: PathLike, *, encoding: str = "utf-8") -> list[Record]:
    """Aligned sentences, one a line in each file (Multi30k): keys ``text`` (the source side) and
    ``target``; ``source`` is the source file, ``target_source`` the target file.

    The files must have as many lines as each other, and no line may be empty: either would
    misalign every pair after it.
    """
    sources = list(_lines(source_path, encoding))
    targets = list(_lines(target_path, encoding))
    if len(sources) != len(targets):
        raise InstructionError(
            f"parallel files differ in length: {source_path} has {len(sources)} lines, "
            f"{target_path} has {len(targets)}",
            source=str(source_path),
        )
    records = []
    for (line, text), (_, target) in zip(sources, targets):
        for path, side in ((source_path, text), (target_path, target)):
            if not side.strip():
                raise InstructionError("empty line in a parallel file", source=str(path), record=line)
        records.append(
            {
                "id": f"{Path(source_path).name}:{line}",
                "text": text.strip(),
                "target": target.strip(),
                "source": str(source_path),
                "target_source": str(target_path),
                "record": line,
            }
        )
    return records


def _lines(path: PathLike, encoding: str | None) -> list[tuple[int, str]]:
    """(1-based line number, line without its line break); UTF-8 then latin-1 when ``encoding`` is
    ``None``. Only LF, CRLF or CR end a line (not the other breaks ``splitlines`` knows)."""
    data = Path(path).read_bytes()
    if encoding is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    else:
        text = decode_text(data, encoding, str(path), hint=_ENCODING_HINT)
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return list(enumerate(lines, start=1))


_ENCODING_HINT = "pass the file's encoding as the reader's `encoding` option (e.g. encoding='latin-1')"


# -- bAbI ------------------------------------------------------------------------------------------


def read_babi_qa(path: PathLike, max_facts: int | None = None, retrieve: list[int] | None = None) -> list[Record]:
    """One SQuAD-style record per question of a bAbI task file: the ``context`` is the story told
    so far (its facts in order, joined by spaces; only the last ``max_facts`` when given, see
    :meth:`~instructrec.babi.BabiStory.context_before`), ``answers`` the one answer, located in
    the last supporting fact that contains it. Also ``story`` (0-based), ``supporting`` (the
    facts' line numbers), ``facts`` (the context's) and ``evidence`` (each supporting fact the
    context holds, as ``{"text", "start"}``: what a reader's supporting-fact loss labels). ``id`` is
    ``<file name>:s<story>:<line>``; ``record`` the question's 1-based position in the file.

    ``retrieve``: the context is instead the facts that multi-hop retrieval over the story selects,
    per hop how many (:func:`~instructrec.retrieval.stories.story_chains`), in story order: the
    reader reads what retrieval found, as it would over any knowledge base. Where retrieval missed
    the fact that holds the answer, the label falls back to the answer's first mention (or, when the
    context has none, the record is rejected like any record whose answer is not in its context).
    """
    from instructrec.babi import read_babi

    source, name = str(path), Path(path).name
    stories = read_babi(path)  # its errors are located InstructionErrors
    chains = None
    if retrieve:
        from instructrec.retrieval.stories import story_chains

        results, _ = story_chains(stories, retrieve)  # the stories read above: the file is parsed once
        chains = iter([sorted(h.passage.meta["line"] for h in result.selected) for result in results])
    records: list[Record] = []
    for story in stories:
        for question in story.questions:
            facts = next(chains) if chains is not None else story.facts_before(question.line, max_facts)
            context, starts = story.context(facts)
            holding = [n for n in question.supporting if n in starts and question.answer in story.facts[n]]
            start = starts[holding[-1]] + story.facts[holding[-1]].index(question.answer) if holding else None
            records.append({
                "id": f"{name}:s{story.index}:{question.line}",
                "title": "",
                "context": context,
                "question": question.question,
                "answers": [{"text": question.answer, "answer_start": start}],
                "is_impossible": False,
                "story": story.index,
                "supporting": list(question.supporting),
                "facts": facts,
                "evidence": [{"text": story.facts[n], "start": starts[n]} for n in question.supporting if n in starts],
                "source": source,
                "record": len(records) + 1,
            })
    return records


# -- which reader feeds which template -------------------------------------------------------------

READERS: Mapping[str, Callable[..., list[Record]]] = {
    "squad": read_squad,
    "cmrc2018": read_squad,
    "babi": read_babi_qa,
    "sst2": read_sst2,
    "financial_phrasebank": read_financial_phrasebank,
    "agnews": read_agnews,
    "chnsenticorp": read_chnsenticorp,
    "parallel": read_parallel,
    "classification": read_delimited,
    "promptsource/glue_sst2": read_sst2,
    "promptsource/ag_news": read_agnews,
    "promptsource/financial_phrasebank_sentences_allagree": read_financial_phrasebank,
    "promptsource/squad": read_squad,
    "promptsource/squad_v2": read_squad,
    "promptsource/xquad_xquad.en": read_squad,
}


def reader_code(template: str | None, reader_args: Mapping[str, Any]) -> str | None:
    """What besides its options decides a reader's records, for the data cache's key: for a bAbI
    reader that reads what retrieval selects (``retrieve``), a digest of the retrieval code and the
    bAbI parser, so that changing that code makes new cache entries with no version to bump."""
    if template is None or reader_for(template) is not read_babi_qa or not reader_args.get("retrieve"):
        return None
    import instructrec.babi
    import instructrec.retrieval

    files = sorted(Path(instructrec.retrieval.__file__).parent.glob("*.py")) + [Path(instructrec.babi.__file__)]
    return stable_hash(*(f"{path.name}:{file_digest(path)}" for path in files)).to_bytes(8, "big").hex()


def reader_for(template: str) -> Callable[..., list[Record]]:
    """The reader whose records a registered template expects (``promptsource/<file>/<name>``
    templates by their file)."""
    for name in (template, template.rsplit("/", 1)[0]):
        if name in READERS:
            return READERS[name]
    raise InstructionError(f"no raw reader known for template {template!r}; readers exist for {sorted(READERS)}")
