import pytest
import torch

from instructrec import backbones


def test_tiny_bert_builds_offline_with_offsets():
    tokenizer = backbones.load_tokenizer("tiny-bert")
    encoded = tokenizer("Hi, 你好", "ab", return_offsets_mapping=True)
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"]) == [
        "[CLS]", "h", "##i", ",", "[UNK]", "[UNK]", "[SEP]", "a", "##b", "[SEP]"
    ]
    assert encoded["offset_mapping"][1:6] == [(0, 1), (1, 2), (2, 3), (4, 5), (5, 6)]
    encoder = backbones.load_encoder("tiny-bert")
    assert encoder.pooler is None  # an unused pooler would break plain DDP
    out = encoder(input_ids=torch.tensor([encoded["input_ids"]])).last_hidden_state
    assert out.shape == (1, 10, 64)


def test_describe_is_stable_and_distinguishes_backbones():
    assert backbones.describe("tiny-bert") == backbones.describe("tiny-bert")
    assert backbones.describe("tiny-bert").startswith("registry:tiny-bert:")


def test_unknown_names_fail_clearly_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(backbones.BackboneError, match="HF_HUB_OFFLINE is set"):
        backbones.load_tokenizer("org/some-model")
    with pytest.raises(backbones.BackboneError, match="does not exist"):
        backbones.load_tokenizer(str(tmp_path / "missing"))


def test_local_folder_round_trip(tmp_path):
    """A folder in save_pretrained format loads as a backbone, weights included."""
    encoder = backbones.load_encoder("tiny-bert").eval()
    encoder.save_pretrained(tmp_path)
    backbones.load_tokenizer("tiny-bert").save_pretrained(tmp_path)
    reloaded = backbones.load_encoder(str(tmp_path)).eval()
    ids = torch.tensor([[2, 40, 41, 3]])
    torch.testing.assert_close(reloaded(input_ids=ids).last_hidden_state, encoder(input_ids=ids).last_hidden_state)
    assert backbones.load_tokenizer(str(tmp_path))("ab")["input_ids"] == backbones.load_tokenizer("tiny-bert")("ab")["input_ids"]
    assert backbones.describe(str(tmp_path)).startswith("folder:")


@pytest.mark.skipif(not backbones.is_available("minilm-l6"), reason="instructrec[pretrained] (MiniLM) not installed")
def test_auto_resolves_to_minilm_when_installed():
    assert backbones.canonical("auto") == "minilm-l6"
    assert backbones.load_tokenizer("auto").vocab_size == 30522


def split_zip(tmp_path, files: dict[str, bytes], parts: int = 3) -> list:
    import zipfile

    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for name, data in files.items():
            handle.writestr(name, data)
    data = archive.read_bytes()
    size = -(-len(data) // parts)
    paths = []
    for n in range(parts):
        path = tmp_path / f"model.zip.{n + 1:03d}"
        path.write_bytes(data[n * size : (n + 1) * size])
        paths.append(path)
    return paths


def test_split_zip_assembles_once_and_checks_the_weights(tmp_path):
    import hashlib

    weights = b"not really safetensors"
    prefix = hashlib.sha256(weights).hexdigest()[:8]
    parts = split_zip(
        tmp_path,  # as all-mpnet-base-v2's archive: a module config that sorts before the model's
        {"mpnet/1_Pooling/config.json": b"{}", "mpnet/config.json": b"{}", "mpnet/model.safetensors": weights},
    )
    target = tmp_path / "models" / "mpnet-test"
    folder = backbones.assemble_split_zip(parts, target, prefix)
    assert folder == target / "mpnet" and (folder / "model.safetensors").read_bytes() == weights
    for part in parts:
        part.unlink()
    assert backbones.assemble_split_zip([], target, prefix) == folder  # reused, parts not needed
    with pytest.raises(backbones.BackboneError, match="expected sha256"):
        backbones.assemble_split_zip([], target, "00000000")


def test_mpnet_without_its_packages_says_how_to_install():
    if all(_installed(name) for name in backbones.MPNET_PARTS):
        pytest.skip("the mpnet parts are installed here")
    with pytest.raises(backbones.BackboneError, match="--no-deps"):
        backbones.load_tokenizer("mpnet-base")


def _installed(name: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True
