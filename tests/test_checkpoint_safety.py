"""Checkpoints are data: no file may choose code to run, and a broken one is a located input error.

Every command and loader that reads a checkpoint is tried with hostile checkpoints (plain data
naming ``subprocess.Popen`` as the class or as Lightning's instantiator) and with broken files; the
marker file the hostile ones would create must never appear.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from instructrec.cli import main
from instructrec.distill.teacher import load_teacher
from instructrec.errors import InputError
from instructrec.models import MultiTaskModule
from instructrec.models.checkpoints import MODULE_CLASSES, CheckpointError, load_module, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"sentiment": {"type": "classification", "labels": ["positive", "negative"]}}


def hostile_checkpoints(marker: Path) -> dict[str, dict]:
    """Checkpoints of tensors and plain data only (``weights_only=True`` loads them) that would
    run ``touch marker`` if their class names were honoured."""
    popen = {"args": ["touch", str(marker)]}
    return {
        "class_path": {"hyper_parameters": {"_class_path": "subprocess.Popen", **popen}, "state_dict": {}},
        "instantiator": {
            "hyper_parameters": {"_class_path": "instructrec.models.MultiTaskModule", "_instantiator": "subprocess.Popen",
                                 "tasks": TASKS, "backbone": "tiny-bert", **popen},
            "state_dict": {},
        },
        "lightning_module_elsewhere": {
            "hyper_parameters": {"_class_path": "lightning.pytorch.demos.boring_classes.BoringModel"}, "state_dict": {},
        },
    }


def broken_files(folder: Path) -> dict[str, Path]:
    files = {
        "empty": b"",
        "random": bytes(range(256)) * 4,
        "text": b"not a checkpoint\n",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.ckpt"
        paths[name].write_bytes(data)
    good = folder / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(64)}, "hyper_parameters": {}}, good)
    paths["truncated"] = folder / "truncated.ckpt"
    paths["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return paths


@pytest.fixture
def hostile(tmp_path):
    marker = tmp_path / "ran-code"
    paths = {}
    for name, content in hostile_checkpoints(marker).items():
        paths[name] = tmp_path / f"{name}.ckpt"
        torch.save(content, paths[name])
    yield paths, marker
    assert not marker.exists(), "a checkpoint ran code"


def test_the_registry_lists_only_our_modules():
    assert all(path.startswith("instructrec.") for path in MODULE_CLASSES)
    for path in MODULE_CLASSES:
        from instructrec.models.checkpoints import module_class

        assert module_class(path).__module__ == MODULE_CLASSES[path][0]


@pytest.mark.parametrize("name", ["class_path", "lightning_module_elsewhere"])
def test_load_module_refuses_classes_that_are_not_ours(hostile, name):
    paths, _ = hostile
    with pytest.raises(CheckpointError, match="not one of instructrec's modules; refusing to import it") as error:
        load_module(paths[name])
    assert error.value.source == str(paths[name])
    assert "instructrec.models.MultiTaskModule" in error.value.hint


def test_load_module_refuses_an_instantiator_that_is_not_lightnings(hostile):
    paths, _ = hostile
    with pytest.raises(CheckpointError, match="instantiator 'subprocess.Popen', which is not Lightning's"):
        load_module(paths["instantiator"])


@pytest.mark.parametrize("name", ["class_path", "instantiator"])
def test_every_command_refuses_a_hostile_checkpoint(hostile, name, tmp_path, capsys, monkeypatch):
    paths, _ = hostile
    monkeypatch.chdir(ROOT)
    kb = tmp_path / "kb.jsonl"
    kb.write_text('{"id": "a", "text": "Mary went to the garden."}\n')
    commands = {
        "export": ["export", str(paths[name]), str(tmp_path / "out")],
        "ask": ["ask", "--kb", str(kb), "--ckpt", str(paths[name]), "Where is Mary?"],
        "fit --ckpt_path": ["fit", "--config", "configs/quickstart.yaml", "--ckpt_path", str(paths[name])],
        "predict --ckpt_path": ["predict", "--config", "configs/quickstart.yaml", "--ckpt_path", str(paths[name])],
    }
    for command, argv in commands.items():
        with pytest.raises(SystemExit) as exit:
            main(argv)
        assert exit.value.code == 2, command
        err = capsys.readouterr().err
        assert "refusing to import it" in err and "'subprocess.Popen'" in err, (command, err)
        assert "Traceback" not in err


def test_the_teacher_refuses_a_hostile_checkpoint(hostile):
    paths, _ = hostile
    with pytest.raises(CheckpointError, match="subprocess.Popen"):
        load_teacher(str(paths["class_path"]))


def test_distillation_module_refuses_a_hostile_teacher(hostile):
    from instructrec.distill.module import DistillationModule

    paths, _ = hostile
    with pytest.raises(CheckpointError, match="refusing to import it"):
        DistillationModule(teacher=str(paths["class_path"]), tasks=TASKS, backbone="tiny-bert")


@pytest.mark.parametrize("name", ["empty", "random", "text", "truncated"])
def test_broken_checkpoints_are_located_input_errors(tmp_path, name, capsys):
    path = broken_files(tmp_path)[name]
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as error:
        read_checkpoint(path)
    assert isinstance(error.value, InputError) and error.value.source == str(path)
    with pytest.raises(SystemExit) as exit:
        main(["export", str(path), str(tmp_path / "out")])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"instructrec: error: {path}: not a readable checkpoint") and "Traceback" not in err


class Payload:
    """A pickled object: ``weights_only=True`` refuses to rebuild it."""

    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_a_pickled_object_is_refused(tmp_path, capsys):
    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Payload()}}, path)
    with pytest.raises(CheckpointError, match="holds Python objects besides tensors and plain data"):
        read_checkpoint(path)
    assert "unpickled code ran" not in capsys.readouterr().out


def test_missing_checkpoint_and_missing_state_dict(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint file does not exist"):
        read_checkpoint(tmp_path / "nope.ckpt")
    path = tmp_path / "nostate.ckpt"
    torch.save({"hyper_parameters": {"_class_path": "instructrec.models.MultiTaskModule"}}, path)
    with pytest.raises(CheckpointError, match="has no state_dict"):
        load_module(path)
    torch.save([1, 2], path)
    with pytest.raises(CheckpointError, match="holds a list, not a dict"):
        read_checkpoint(path)


def test_our_own_checkpoint_still_loads(tmp_path):
    torch.manual_seed(0)
    model = MultiTaskModule(TASKS, backbone="tiny-bert")
    path = tmp_path / "ours.ckpt"
    torch.save({"state_dict": model.state_dict(),
                "hyper_parameters": {**dict(model.hparams), "_class_path": "instructrec.models.multitask.MultiTaskModule"}}, path)
    again = load_module(path)
    assert type(again) is MultiTaskModule
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], tensor, rtol=0, atol=0)


def test_weights_that_do_not_fit_are_an_input_error(tmp_path):
    path = tmp_path / "misfit.ckpt"
    torch.save({"state_dict": {"encoder.nope": torch.zeros(1)},
                "hyper_parameters": {"_class_path": "instructrec.models.MultiTaskModule", "tasks": TASKS,
                                     "backbone": "tiny-bert"}}, path)
    with pytest.raises(CheckpointError, match="do not fit MultiTaskModule"):
        load_module(path)


def test_remote_ckpt_path_is_refused(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", "configs/quickstart.yaml", "--ckpt_path", "https://example.invalid/x.ckpt"])
    assert exit.value.code == 2
    assert "remote checkpoints are not loaded" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["empty", "random", "truncated"])
def test_ckpt_path_refuses_broken_files_as_every_loader_does(tmp_path, name, capsys, monkeypatch):
    """`--ckpt_path` only maps the file for its check; a broken one gets the same message."""
    monkeypatch.chdir(ROOT)
    path = broken_files(tmp_path)[name]
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", "configs/quickstart.yaml", "--ckpt_path", str(path)])
    assert exit.value.code == 2
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    assert f"instructrec: error: {error.value}" in capsys.readouterr().err


def test_mapped_and_read_checkpoints_are_the_same(tmp_path):
    path = tmp_path / "ok.ckpt"
    torch.save({"state_dict": {"w": torch.arange(6.0)}, "hyper_parameters": {"_class_path": "instructrec.models.MultiTaskModule"}}, path)
    mapped, read = read_checkpoint(path, mmap=True), read_checkpoint(path)
    assert mapped["hyper_parameters"] == read["hyper_parameters"]
    assert torch.equal(mapped["state_dict"]["w"], read["state_dict"]["w"])
