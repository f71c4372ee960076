"""Templates: exact instructions from small records, seeded variant choice, the registry,
promptsource loading, and every built-in over real data rows."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instructrec.data import raw
from instructrec.instructions import Instruction, InstructionError
from instructrec.instructions import promptsource, templates
from instructrec.instructions.templates import TemplateNotApplicable, get_template, list_templates, register_template

BUILTINS = ["agnews", "chnsenticorp", "classification", "cmrc2018", "financial_phrasebank", "parallel", "squad", "sst2"]


@pytest.fixture
def registry(monkeypatch):
    """A scratch copy of the registry, so that a test's registrations do not leak."""
    monkeypatch.setattr(templates, "_REGISTRY", dict(templates._REGISTRY))


def record(**fields):
    return {"id": "r1", "source": "data.tsv", "record": 7, **fields}


# -- exact instructions ----------------------------------------------------------------------------


def test_squad_takes_the_first_answer():
    squad = record(
        question="Where is Paris?",
        context=" Paris is in France. ",
        answers=[{"text": "France", "answer_start": 13}, {"text": "in France", "answer_start": 10}],
        is_impossible=False,
    )
    assert get_template("squad").apply(squad, seed=0, index=0) == Instruction(
        "qa", "en", {"question": "Where is Paris?", "context": "Paris is in France.", "answer": "France"}
    )


def test_unanswerable_question_has_no_answer():
    squad = record(question="Who is king?", context="Paris is in France.", answers=[], is_impossible=True)
    instruction = get_template("squad").apply(squad, seed=0, index=0)
    assert instruction.fields == {"question": "Who is king?", "context": "Paris is in France."}


def test_cmrc2018_is_chinese_qa():
    cmrc = record(question="谁开发的？", context="由光荣开发。", answers=[{"text": "光荣", "answer_start": 1}])
    assert get_template("cmrc2018").apply(cmrc, seed=0, index=0) == Instruction(
        "qa", "zh", {"question": "谁开发的？", "context": "由光荣开发。", "answer": "光荣"}
    )


def test_sst2_forced_variant():
    sst2 = record(sentence="a charming journey .", label="positive")
    assert get_template("sst2").apply(sst2, seed=0, index=0, variant=1) == Instruction(
        "classification",
        "en",
        {
            "instruction": "Is this review positive or negative?",
            "text": "a charming journey .",
            "options": ["negative", "positive"],
            "answer": "positive",
        },
    )


def test_agnews_joins_title_and_description_where_both_exist():
    agnews = get_template("agnews")
    both = agnews.apply(record(title="Fears", description="Unions say no.", label="Business"), seed=0, index=0, variant=0)
    assert both.fields == {
        "instruction": "Classify the topic of the following news article",
        "text": "Fears Unions say no.",
        "options": ["World", "Sports", "Business", "Sci/Tech"],
        "answer": "Business",
    }
    only = agnews.apply(record(description="Unions say no.", label="World"), seed=0, index=0, variant=0)
    assert only.fields["text"] == "Unions say no."


def test_chnsenticorp_and_financial_phrasebank():
    chn = get_template("chnsenticorp").apply(record(review="房间很大", label="正面"), seed=0, index=0, variant=0)
    assert chn == Instruction(
        "classification", "zh", {"instruction": "判断下面文本的情感", "text": "房间很大", "options": ["负面", "正面"], "answer": "正面"}
    )
    fpb = get_template("financial_phrasebank").apply(record(sentence="Sales fell .", label="negative"), seed=0, index=0)
    assert fpb.fields["options"] == ["negative", "neutral", "positive"]
    assert fpb.answer == "negative"


def test_parallel_takes_languages_as_options():
    parallel = get_template("parallel", source_language="English", target_language="German")
    pair = record(text="A dog runs.", target="Ein Hund rennt.")
    assert parallel.apply(pair, seed=0, index=0) == Instruction(
        "translation",
        "en",
        {"source_language": "English", "target_language": "German", "text": "A dog runs.", "answer": "Ein Hund rennt."},
    )
    with pytest.raises(TypeError, match="target_language"):
        get_template("parallel", source_language="English")


def test_generic_classification_template():
    topic = get_template(
        "classification", text_keys=["headline", "body"], label_key="y", options=["spam", "ham"], label_map={"1": "spam", "0": "ham"}
    )
    assert topic.apply(record(headline="Win!", body="Click now", y="1"), seed=3, index=9) == Instruction(
        "classification", "en", {"text": "Win! Click now", "options": ["spam", "ham"], "answer": "spam"}
    )
    assert topic.apply(record(headline="Hi", body="", y=None), seed=0, index=0).answer is None  # prediction input


# -- errors name the template, file and record -----------------------------------------------------


@pytest.mark.parametrize(
    "name, bad, message",
    [
        ("sst2", {"sentence": "fine", "label": "neutral"}, "template 'sst2': label 'neutral' is not one of the options"),
        ("sst2", {"label": "positive"}, "template 'sst2': the record has no 'sentence'"),
        ("sst2", {"sentence": "  ", "label": "positive"}, "template 'sst2': empty text in ['sentence']"),
        ("squad", {"context": "c", "answers": []}, "template 'squad': the record has no 'question'"),
        ("squad", {"question": "q?", "context": "c", "answers": [{"text": " "}]}, "template 'squad': field 'answer' is empty"),
    ],
)
def test_errors_are_located(name, bad, message):
    with pytest.raises(InstructionError) as error:
        get_template(name).apply(record(**bad), seed=0, index=0)
    assert str(error.value).startswith(f"data.tsv, record 7: {message}")
    assert (error.value.source, error.value.record) == ("data.tsv", 7)


def test_variant_out_of_range():
    with pytest.raises(InstructionError, match=r"variants 0\.\.3, not 4"):
        get_template("sst2").apply(record(sentence="x", label="positive"), seed=0, index=0, variant=4)


# -- seeded variant choice -------------------------------------------------------------------------


def test_variant_choice_is_pinned():
    # Fixed values: a change here changes every run's phrasings (Python's salted hash() would fail).
    assert [get_template("sst2").variant_for(0, i) for i in range(10)] == [2, 0, 2, 2, 0, 0, 2, 1, 1, 1]


@given(seed=st.integers(), index=st.integers(min_value=0))
def test_variant_choice_is_a_function_of_seed_and_index(seed, index):
    sst2 = get_template("sst2")
    assert 0 <= sst2.variant_for(seed, index) < len(sst2.variants)
    assert sst2.variant_for(seed, index) == sst2.variant_for(seed, index)


def test_same_seed_and_index_give_the_same_instruction():
    sst2 = get_template("sst2")
    example = record(sentence="fine", label="positive")
    first = [sst2.apply(example, seed=5, index=i) for i in range(50)]
    assert first == [sst2.apply(example, seed=5, index=i) for i in range(50)]
    assert [sst2.apply(record(sentence="other", label="negative"), seed=5, index=i).fields["instruction"] for i in range(50)] == [
        instruction.fields["instruction"] for instruction in first
    ]  # the choice depends on (seed, index), not on the record


def test_seeds_give_different_choices_over_all_variants():
    sst2 = get_template("sst2")
    by_seed = {seed: [sst2.variant_for(seed, i) for i in range(100)] for seed in (0, 1, 2)}
    assert len({tuple(choices) for choices in by_seed.values()}) == 3
    for choices in by_seed.values():
        counts = Counter(choices)
        assert set(counts) == set(range(len(sst2.variants)))
        assert min(counts.values()) >= 10  # roughly uniform over 4 variants


def test_options_are_the_same_for_every_example():
    sst2 = get_template("sst2")
    options = {tuple(sst2.apply(record(sentence="x", label="negative"), seed=s, index=i).fields["options"]) for s in range(3) for i in range(30)}
    assert options == {("negative", "positive")}


# -- the registry ----------------------------------------------------------------------------------


def test_builtins_are_registered():
    assert set(BUILTINS) <= set(list_templates())
    assert list_templates() == sorted(list_templates())


def test_unknown_template_lists_the_known_ones():
    with pytest.raises(InstructionError, match=r"unknown template 'sst-2'; known templates: .*agnews.*sst2"):
        get_template("sst-2")


def test_register_and_replace(registry):
    mine = templates.ClassificationTemplate("mine", "en", text_keys=["t"], options=["a", "b"], instructions=["Pick one"])
    register_template(mine)
    assert get_template("mine") is mine
    with pytest.raises(InstructionError, match="already registered"):
        register_template(mine)
    register_template(mine, replace=True)
    with pytest.raises(TypeError, match="takes no options"):
        get_template("mine", language="zh")


def test_template_checks_its_task_and_language():
    with pytest.raises(InstructionError, match="unknown language 'de'"):
        templates.QATemplate("x", "de")


# -- promptsource ----------------------------------------------------------------------------------

PROMPTSOURCE_YAML = """\
dataset: glue
subset: sst2
templates:
  aaa: !Template
    answer_choices: negative ||| positive
    id: aaa
    jinja: 'Review: "{{sentence}}"

      Positive or negative? ||| {{ answer_choices[label] }}'
    metadata: &meta !TemplateMetadata
      choices_in_prompt: true
      metrics:
      - Accuracy
      original_task: true
    name: review
    reference: ''
  bbb: !Template
    answer_choices: null
    id: bbb
    jinja: '{% set seq = [''Say it'', ''Tell me'', ''Write'', ''Give''] %}{{ seq | choice }}: {{ sentence }} ||| {{ sentence | upper }}'
    metadata: *meta
    name: echo
    reference: ''
  ccc: !Template
    answer_choices: '{{ candidates | join("|||") }}'
    id: ccc
    jinja: '{% if label == 1 %}{{sentence}} ||| {{ answer_choices[0] }}{% endif %}'
    metadata: *meta
    name: only positive
    reference: ''
"""


@pytest.fixture
def ps_file(tmp_path):
    path = tmp_path / "glue_sst2.templates.yaml"
    path.write_text(PROMPTSOURCE_YAML, encoding="utf-8")
    return path


def test_promptsource_classification_from_our_record(ps_file):
    review, echo, only = promptsource.load_promptsource(ps_file)
    assert [t.name for t in (review, echo, only)] == [
        "promptsource/glue_sst2/review",
        "promptsource/glue_sst2/echo",
        "promptsource/glue_sst2/only positive",
    ]
    assert review.columns == ["label", "sentence"]
    sst2 = record(sentence="a charming journey .", label="positive")  # as read_sst2 gives it
    assert review.apply(sst2, seed=0, index=0) == Instruction(
        "classification",
        "en",
        {
            "text": 'Review: "a charming journey ."\nPositive or negative?',
            "options": ["negative", "positive"],
            "answer": "positive",
        },
    )


def test_promptsource_generation_and_deterministic_choice(ps_file):
    echo = promptsource.load_promptsource(ps_file)[1]
    example = record(sentence="hi ||| there", label="negative")  # a '|||' in the data is not a separator
    instruction = echo.apply(example, seed=0, index=0)
    assert instruction.task == "generation"
    assert instruction.answer == "HI ||| THERE"
    assert re.fullmatch(r"(Say it|Tell me|Write|Give): hi \|\|\| there", instruction.fields["prompt"])
    prompts = [echo.apply(example, seed=1, index=i).fields["prompt"] for i in range(40)]
    assert prompts == [echo.apply(example, seed=1, index=i).fields["prompt"] for i in range(40)]
    assert len(set(prompts)) == 4


def test_promptsource_jinja_answer_choices_and_not_applicable(ps_file):
    only = promptsource.load_promptsource(ps_file)[2]
    instruction = only.apply(record(sentence="good", label=1, candidates=["yes", "no"]), seed=0, index=0)
    assert (instruction.fields["options"], instruction.answer) == (["yes", "no"], "yes")
    with pytest.raises(TemplateNotApplicable, match=r"data.tsv, record 7: .*does not apply"):
        only.apply(record(sentence="bad", label=0, candidates=["yes", "no"]), seed=0, index=0)


def test_promptsource_jinja_failure_names_template_and_record(ps_file):
    review = promptsource.load_promptsource(ps_file)[0]
    with pytest.raises(InstructionError) as error:
        review.apply(record(text="no sentence column", label="positive"), seed=0, index=0)
    assert str(error.value).startswith("data.tsv, record 7: template 'promptsource/glue_sst2/review': the Jinja failed")
    assert "'sentence' is undefined" in str(error.value)


def test_promptsource_is_sandboxed(tmp_path):
    path = tmp_path / "evil.templates.yaml"
    path.write_text(
        "dataset: x\ntemplates:\n  a: !Template\n    answer_choices: null\n    name: evil\n"
        "    jinja: \"{{ ''.__class__.__mro__ }} ||| x\"\n",
        encoding="utf-8",
    )
    (evil,) = promptsource.load_promptsource(path)
    with pytest.raises(InstructionError, match="SecurityError|UndefinedError"):
        evil.apply(record(), seed=0, index=0)


def test_promptsource_yaml_is_safe(tmp_path):
    path = tmp_path / "bad.templates.yaml"
    path.write_text("templates: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(InstructionError, match="not valid promptsource YAML"):
        promptsource.load_promptsource(path)


def test_register_promptsource(registry, ps_file):
    promptsource.register_promptsource(ps_file)
    promptsource.register_promptsource(ps_file)  # loading again replaces
    assert "promptsource/glue_sst2/review" in list_templates()
    assert get_template("promptsource/glue_sst2/review").task == "classification"


# -- real data -------------------------------------------------------------------------------------


def check_all(template, records):
    """Every record gives a valid instruction of the template's task; the options never change."""
    options = set()
    for index, rec in enumerate(records):
        instruction = template.apply(rec, seed=0, index=index)
        assert isinstance(instruction, Instruction) and instruction.task == template.task
        options.add(tuple(instruction.fields.get("options", ())))
    return options


def test_builtins_on_real_rows(shared_data):
    d = shared_data
    assert check_all(get_template("squad"), raw.read_squad(d / "squad_v1.1_dev/dev-v1.1.part1.json")[:500]) == {()}
    trial = raw.read_squad(d / "cmrc2018/cmrc2018_trial.json")
    assert check_all(get_template("cmrc2018"), [r for r in trial if r["question"]]) == {()}
    assert check_all(get_template("sst2"), raw.read_sst2(d / "sst2_glue/glue_dev.tsv")) == {templates.SST2_OPTIONS}
    fpb = raw.read_financial_phrasebank(d / "financial_phrasebank/Sentences_AllAgree.txt")
    assert check_all(get_template("financial_phrasebank"), fpb) == {templates.FINANCIAL_PHRASEBANK_OPTIONS}
    agnews = raw.read_agnews(d / "agnews/test.csv")[:2000]
    assert check_all(get_template("agnews"), agnews) == {templates.AGNEWS_OPTIONS}
    pairs = raw.read_parallel(d / "multi30k/val.en", d / "multi30k/val.de")
    assert check_all(get_template("parallel", source_language="English", target_language="German"), pairs) == {()}
    generic = get_template("classification", text_keys=["sentence"], options=["negative", "positive"], label_map=raw.SST2_LABELS)
    rows = raw.read_delimited(d / "sst2_glue/glue_dev.tsv", text_columns=["sentence"], label_column="label")
    assert check_all(generic, rows) == {templates.SST2_OPTIONS}


def test_chnsenticorp_real_rows_and_its_one_empty_review(shared_data):
    records = raw.read_chnsenticorp(shared_data / "chnsenticorp_htl/ChnSentiCorp_htl_all.csv")
    empty = [r for r in records if not r["review"]]
    assert [r["record"] for r in empty] == [6376]
    assert check_all(get_template("chnsenticorp"), [r for r in records if r["review"]]) == {templates.CHNSENTICORP_OPTIONS}
    with pytest.raises(InstructionError, match=r"ChnSentiCorp_htl_all.csv, record 6376: template 'chnsenticorp': empty text"):
        get_template("chnsenticorp").apply(empty[0], seed=0, index=0)


def test_cmrc2018_trial_has_two_empty_questions(shared_data):
    trial = raw.read_squad(shared_data / "cmrc2018/cmrc2018_trial.json")
    for bad in [r for r in trial if not r["question"]]:
        with pytest.raises(InstructionError, match=rf"cmrc2018_trial.json, record {bad['record']}: .*'question' is empty"):
            get_template("cmrc2018").apply(bad, seed=0, index=0)
    assert [r["id"] for r in trial if not r["question"]] == ["TRIAL_776_QUERY_4", "TRIAL_20_QUERY_0"]


@pytest.mark.slow
def test_builtins_on_all_large_real_sets(shared_data):
    d = shared_data
    v2 = raw.read_squad(d / "squad_v2.0_dev/dev-v2.0.json")
    instructions = [get_template("squad").apply(r, seed=0, index=i) for i, r in enumerate(v2)]
    assert sum(i.answer is not None for i in instructions) == 5928
    check_all(get_template("cmrc2018"), raw.read_squad(d / "cmrc2018/cmrc2018_dev.json"))
    check_all(get_template("agnews"), raw.read_agnews(d / "agnews/train_subset_10k.tsv"))
    check_all(get_template("sst2"), raw.read_sst2(d / "sst2_glue/glue_train_part2.tsv"))
    pairs = raw.read_parallel(d / "multi30k/train.en", d / "multi30k/train.fr")
    check_all(get_template("parallel", source_language="English", target_language="French"), pairs)


PROMPTSOURCE_DATA = {
    "glue_sst2": lambda d: raw.read_sst2(d / "sst2_glue/glue_dev.tsv")[:100],
    "ag_news": lambda d: raw.read_agnews(d / "agnews/test.csv")[:100],
    "financial_phrasebank_sentences_allagree": lambda d: raw.read_financial_phrasebank(
        d / "financial_phrasebank/Sentences_AllAgree.txt"
    )[:100],
    "squad": lambda d: raw.read_squad(d / "squad_v1.1_dev/dev-v1.1.part1.json")[:100],
    "xquad_xquad.en": lambda d: raw.read_squad(d / "squad_v1.1_dev/dev-v1.1.part2.json")[:100],
}


def test_all_promptsource_files_load(shared_data):
    loaded = [t for f in sorted((shared_data / "promptsource_templates").glob("*.templates.yaml")) for t in promptsource.load_promptsource(f)]
    assert len(loaded) == 79
    assert Counter(t.name.split("/")[1] for t in loaded)["glue_sst2"] == 5


@pytest.mark.parametrize("stem", sorted(PROMPTSOURCE_DATA))
def test_promptsource_templates_on_real_rows(shared_data, stem):
    records = PROMPTSOURCE_DATA[stem](shared_data)
    for template in promptsource.load_promptsource(shared_data / f"promptsource_templates/{stem}.templates.yaml"):
        options = check_all(template, records)
        if template.task == "classification":
            assert len(options) == 1  # fixed answer choices for these files


@pytest.mark.slow
def test_promptsource_squad_v2_on_unanswerable_questions(shared_data):
    records = raw.read_squad(shared_data / "squad_v2.0_dev/dev-v2.0.json")
    impossible = next(r for r in records if r["is_impossible"])
    by_name = {t.name.rsplit("/", 1)[1]: t for t in promptsource.load_promptsource(shared_data / "promptsource_templates/squad_v2.templates.yaml")}
    assert by_name["Questions with Context +unanswerable"].apply(impossible, seed=0, index=0).answer == "unanswerable"
    assert by_name["Unanwerable question"].apply(impossible, seed=0, index=0).answer == "no"
    with pytest.raises(TemplateNotApplicable, match=rf"record {impossible['record']}: template 'promptsource/squad_v2/Trivia'"):
        by_name["Trivia"].apply(impossible, seed=0, index=0)
    squad_v1 = promptsource.load_promptsource(shared_data / "promptsource_templates/squad.templates.yaml")[0]
    with pytest.raises(InstructionError, match="the Jinja failed"):
        squad_v1.apply(impossible, seed=0, index=0)  # v1 templates assume an answer
