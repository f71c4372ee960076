"""Markers: the words that introduce fields in instruction text, how to find them, how to escape.

One table serves the parser and the renderer, so the two cannot drift apart.

Grammar of a marker:

* A marker word directly followed by a colon, ASCII ``:`` or full-width ``：`` (no space between:
  ``Answer :`` is not a marker). English words match case-insensitively (ASCII letters only),
  Chinese words as written.
* An English marker opens a field where a field can start, never inside prose: at the start of
  a line (white space before it on its line at most; any case: ``question:`` too), or further
  along a line when it is capitalised (``Question:``, ``QUESTION:``) and follows the end of a
  sentence or clause (the last non-space character before it is not a letter or digit). So the
  one-line form ``Question: Who? Context: Hamlet is a play. Answer: Shakespeare`` has three
  markers, while ``Classify the type of the question: ...``, ``... in one sentence: ...``, ``The
  Short Answer: ...`` and ``Plan A: ...`` have none. A Chinese marker counts at the
  start, after white space or after any character that is not a letter (punctuation, digits), but
  not after a letter: the ``问`` of ``请问：`` is part of a word, while ``问题：谁？答案：曹雪芹`` has
  two markers. "Letter" means a Unicode letter (``[^\\W\\d_]``).
* Translation markers carry their languages: ``Translate <source> to <target>:`` (optionally
  opened by ``Please``) and ``将<source>翻译成<target>：`` (optionally opened by ``请``). A language
  is one line without colons or backslashes and without white space at its ends; the source ends
  at the first `` to `` / ``翻译成`` that leaves a valid target.
* Each colon ends at most one marker: the longest that fits (``问题：`` rather than ``问``, and
  ``Translate English to Answer:`` is one translation marker).
* Escaping: a colon preceded by an odd number of backslashes is escaped and never ends a marker.
  In values, a run of n backslashes directly before a colon reads as n // 2 backslashes (for odd n
  the colon is literal). Backslashes not directly before a colon are left alone (``C:\\Users``).

Markers are found from their colons. One combined regex, written for the *reversed* text, starts
with the colon and reads each marker backwards from it, so the regex engine tries no position but
a colon (colons are rare; this is what makes parsing fast). Each match holds exactly one colon,
its first character, so matches never overlap and no colon is skipped. The regex is precompiled
in a few variants (which colon kinds occur; whether translation markers can) chosen per text.
"""

from __future__ import annotations

import re
from typing import NamedTuple

COLONS = ":："

# Marker words per language and field; the first spelling is the one `render` writes.
MARKER_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "question": ("Question", "Q"),
        "context": ("Context", "Passage"),
        "text": ("Text", "Sentence"),
        "options": ("Options", "Choices"),
        "prompt": ("Instruction", "Prompt"),
        "answer": ("Answer", "A"),
    },
    "zh": {
        "question": ("问题", "问"),
        "context": ("上下文", "文章", "背景"),
        "text": ("文本", "句子"),
        "options": ("选项",),
        "prompt": ("指令",),
        "answer": ("答案", "答"),
    },
}
# What `render` writes after a marker word: its colon, then a space in English only.
MARKER_END: dict[str, str] = {"en": ": ", "zh": "："}
# How `render` writes a translation marker.
TRANSLATION_MARKER: dict[str, str] = {
    "en": "Translate {source} to {target}: ",
    "zh": "将{source}翻译成{target}：",
}
TRANSLATE = "translate"  # the field name of a translation marker (its value is the text)

# Han ideographs: the CJK blocks, compatibility ideographs and extensions B-H.
HAN_CHARACTERS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")


def is_mostly_chinese(text: str) -> bool:
    """Han characters are more than half of the text's letters: the one rule every part of the
    package that tells Chinese from English uses. Digits, punctuation (full-width or not) and
    spaces belong to neither language, so they do not count."""
    letters = sum(1 for c in text if c.isalpha())
    return 2 * len(HAN_CHARACTERS.findall(text)) > letters


def guess_language(text: str) -> str:
    """The language of a text without markers: ``zh`` when it is mostly Chinese, else ``en``."""
    return "zh" if is_mostly_chinese(text) else "en"


# Verbs that open a classification instruction ("Classify the sentiment of ...: <text>").
IMPERATIVES_EN = (
    "classify", "categorize", "categorise", "determine", "decide", "identify", "label",
    "predict", "choose", "select", "detect", "is", "are", "does", "do",
)
IMPERATIVES_ZH = ("判断", "分类", "识别", "选择")
IMPERATIVE = re.compile(
    r"(?ai:(?:please\s+)?(?:%s))\b|请?(?:%s)" % ("|".join(IMPERATIVES_EN), "|".join(IMPERATIVES_ZH))
)


class Marker(NamedTuple):
    """A marker found in a text: ``text[start:end]`` is the marker, its colon included."""

    start: int
    end: int
    field: str  # a field name, or TRANSLATE
    language: str
    source: str | None = None  # languages of a translation marker
    target: str | None = None


def _build_scanners() -> tuple[dict, re.Pattern, dict[str, tuple[str, str]]]:
    """The regexes over reversed text, and what their groups mean.

    Returns the scanners by (colon kinds present, translation markers possible), the Chinese
    translation marker alone, and group name -> (field, language).
    """
    lang = r"[^\s:：\\](?:[^\r\n:：\\]*[^\s:：\\])?"  # a language; its reverse is the same pattern
    en_context, zh_context = r"(?!\S)", r"(?![^\W\d_])"  # "after white space", "after a non-letter"
    # Read backwards, from the colon: (Please )?Translate <src> to <tgt>:  and  (请)?将<src>翻译成<tgt>：
    en_translation = (
        rf"(?P<en_tgt>{lang})[ \t]+(?ai:ot)[ \t]+(?P<en_src>{lang})[ \t]+(?ai:etalsnart)"
        rf"(?:[ \t]+(?ai:esaelp))?{en_context}(?P<en_{TRANSLATE}>)"
    )
    zh_translation = rf"(?P<zh_tgt>{lang})成译翻(?P<zh_src>{lang})将请?{zh_context}(?P<zh_{TRANSLATE}>)"
    kinds = {f"en_{TRANSLATE}": (TRANSLATE, "en"), f"zh_{TRANSLATE}": (TRANSLATE, "zh")}
    words = []
    for language, context in (("en", en_context), ("zh", zh_context)):
        for field, spellings in MARKER_WORDS[language].items():
            spelled = "|".join(re.escape(w[::-1]) for w in sorted(spellings, key=len, reverse=True))
            case = "(?ai:%s)" if language == "en" else "(?:%s)"
            words.append(case % spelled + f"{context}(?P<{language}_{field}>)")
            kinds[f"{language}_{field}"] = (field, language)
    # Translations first: at a colon they are longer than any word marker ending there.
    markers = {True: "|".join([en_translation, zh_translation] + words), False: "|".join(words)}
    # One colon kind as the first character lets the regex engine jump between colons with a
    # fast literal search; both kinds need a (slower) character class.
    colons = {":": ":", "：": "：", COLONS: "[:：]"}
    scanners = {
        (kind, translations): re.compile(f"{first}(?:{markers[translations]})")
        for kind, first in colons.items()
        for translations in (True, False)
    }
    return scanners, re.compile("[:：]" + zh_translation), kinds


_SCANNERS, _ZH_TRANSLATION, _KINDS = _build_scanners()
_new_tuple = tuple.__new__  # builds a Marker in half the time of its generated __new__


def find_markers(text: str) -> list[Marker]:
    """All markers in ``text``, in order."""
    ascii_colon, wide_colon = ":" in text, "：" in text
    if not (ascii_colon or wide_colon):
        return []
    colons = COLONS if ascii_colon and wide_colon else ":" if ascii_colon else "："
    # Trying translation markers costs more than all word markers, so only where one could be.
    translations = "翻译成" in text or "translate" in text.lower()
    n, reversed_text, found = len(text), text[::-1], []
    for match in _SCANNERS[colons, translations].finditer(reversed_text):
        field, language = _KINDS[match.lastgroup]
        end = n - match.start()
        if field != TRANSLATE:
            start = n - match.end()
            if language == "zh" or opens_a_field(text, start):
                found.append(_new_tuple(Marker, (start, end, field, language, None, None)))
            continue
        if language == "en":  # a Chinese translation marker ending at the same colon may be longer
            zh = _ZH_TRANSLATION.match(reversed_text, match.start())
            if zh is not None and zh.end() > match.end():
                match, language = zh, "zh"
        source = match.group(f"{language}_src")[::-1]
        target = match.group(f"{language}_tgt")[::-1]
        found.append(Marker(n - match.end(), end, TRANSLATE, language, source, target))
    found.reverse()
    return found


def opens_a_field(text: str, start: int) -> bool:
    """Whether an English marker word at ``start`` opens a field rather than sitting in prose: at
    the start of a line, or capitalised after a character that is not a letter or digit."""
    before = start - 1
    while before >= 0 and text[before] in " \t":  # (markers follow white space: usually one step)
        before -= 1
    if before < 0 or text[before] in "\n\r":
        return True
    return text[start].isupper() and not text[before].isalnum()


_RUN_BEFORE_COLON = re.compile(r"(?<!\\)(\\+)(?=[:：])")
_COLON_AND_RUN = re.compile(r"(?<!\\)(\\*)([:：])")


def unescape(value: str) -> str:
    """Read a value: each run of n backslashes directly before a colon becomes n // 2."""
    if "\\" not in value:
        return value
    return _RUN_BEFORE_COLON.sub(lambda m: m.group(1)[: len(m.group(1)) // 2], value)


def escape(value: str, before: str = "") -> str:
    """Write ``value`` so that it reads back unchanged after ``before`` (what precedes it).

    Backslash runs before a colon are doubled; a colon that would end a marker gets one backslash.
    Nothing else changes.
    """
    if ":" not in value and "：" not in value:
        return value
    offset = len(before)
    ends = {m.end - 1 - offset for m in find_markers(before + value) if m.end > offset}

    def write(match: re.Match) -> str:
        run, colon = match.group(1), match.group(2)
        if run:
            return run * 2 + colon
        return "\\" + colon if match.start(2) in ends else colon

    return _COLON_AND_RUN.sub(write, value)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_COMMA = re.compile(r"[,，]")


def split_options(value: str) -> list[str]:
    """Options from an (unescaped) value: one per line, else by commas, else '、', else '/'.

    One per line when the value starts on the line after the marker or spans lines; blank lines
    are dropped and so is one leading ``- `` or ``* `` bullet. Options are stripped; the caller
    rejects empty or repeated ones.
    """
    stripped = value.strip()
    starts_on_next_line = value.lstrip(" \t")[:1] in ("\n", "\r")
    if starts_on_next_line or "\n" in stripped or "\r" in stripped:
        lines = (line.strip() for line in _LINE_BREAK.split(stripped))
        bullets = ("- ", "* ")
        return [line[2:].strip() if line.startswith(bullets) else line for line in lines if line]
    if "，" in stripped:
        parts = _COMMA.split(stripped)
    elif "," in stripped:
        parts = stripped.split(",")
    else:
        parts = stripped.split("、" if "、" in stripped else "/")
    return [part.strip() for part in parts]
