"""The commands beside fit/validate/test/predict share one style: `--help` documents them and
`--config FILE` reads their options from YAML, as LightningCLI's commands do."""

from __future__ import annotations

import json

import pytest

from instructrec.cli import main
from instructrec.commands import COMMANDS

@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_documents_itself_and_takes_a_config_file(name, capsys):
    with pytest.raises(SystemExit) as exit:
        main([name, "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: instructrec {name}" in out and "--config CONFIG" in out


def test_options_come_from_a_config_file_as_from_the_command_line(tmp_path, capsys):
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "Ada wrote it.", "qas": [
        {"id": "q1", "question": "Who?", "answers": [{"text": "Ada", "answer_start": 0}]}]}]}]}
    (tmp_path / "data.json").write_text(json.dumps(data))
    (tmp_path / "preds.json").write_text(json.dumps({"q1": "Ada wrote"}))
    (tmp_path / "options.yaml").write_text(f"out_file: {tmp_path / 'scores.json'}\nversion: '1.1'\n")
    main(["evaluate-squad", str(tmp_path / "data.json"), str(tmp_path / "preds.json"), "--config", str(tmp_path / "options.yaml")])
    assert capsys.readouterr().out == ""
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["exact_match"] == 0.0 and scores["f1"] == pytest.approx(200 / 3)  # precision 1/2, recall 1
