"""Tests of ezaudio.text.bert: the built-in BERT against transformers, through TextEncoder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers import BertConfig, BertForMaskedLM, BertModel, PreTrainedTokenizerFast

import ezaudio.text.encoder as encoder_module
from ezaudio.errors import CheckpointError, InvalidInputError
from ezaudio.text import TextEncoder
from ezaudio.text.bert import BertEncoder, BertTokenizer, unsupported_reason

# upper case, accents, CJK, emoji, punctuation, an empty prompt and one past 100 tokens
PROMPTS = [
    "a dog barks twice",
    "",
    "Café RÉSUMÉ naïve 東京 🎉",
    "A Siren WAILS, then a car-horn honks!!",
    "rain on a tin roof " * 40,
]
WORDS = "a dog barks twice siren wails then car horn honks rain on tin roof cafe".split()


@pytest.fixture(autouse=True)
def no_hub_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(encoder_module, "hub_reachable", lambda timeout=3.0: False)


def make_tokenizer() -> PreTrainedTokenizerFast:
    """A lower-casing WordPiece tokenizer built offline: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    letters = sorted(set("".join(WORDS)))
    vocab = {token: i for i, token in enumerate(specials + WORDS + [f"##{c}" for c in letters])}
    vocab.update({c: len(vocab) + i for i, c in enumerate(letters) if c not in vocab})
    backend = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )


def tiny_config(vocab_size: int) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )


@pytest.fixture(scope="module")
def tiny_bert_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = make_tokenizer()
    torch.manual_seed(0)
    BertModel(tiny_config(len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def assert_same_encoding(first, second, atol: float = 1e-5) -> None:
    assert first.states.shape == second.states.shape
    assert torch.equal(first.mask, second.mask)
    torch.testing.assert_close(
        first.states[first.mask], second.states[second.mask], atol=atol, rtol=0
    )


@pytest.mark.parametrize("padding", ["max_length", "longest"])
def test_tiny_bert_matches_transformers(tiny_bert_folder, padding):
    builtin = TextEncoder.from_pretrained(tiny_bert_folder, padding=padding, backend="builtin")
    reference = TextEncoder.from_pretrained(
        tiny_bert_folder, padding=padding, backend="transformers"
    )
    assert isinstance(builtin.model, BertEncoder)
    assert not isinstance(reference.model, BertEncoder)
    assert builtin.describe() == reference.describe()
    first, second = builtin(PROMPTS), reference(PROMPTS)
    assert first.states.shape == (len(PROMPTS), 100, 32)
    assert first.mask.sum(1).tolist()[:2] == [6, 2]  # [CLS] + 4 word pieces... + [SEP]; "" is 2
    assert first.mask[-1].all()  # the long prompt is cut to 100 tokens
    assert_same_encoding(first, second)


def test_auto_backend_picks_the_builtin_bert(tiny_bert_folder):
    assert isinstance(TextEncoder.from_pretrained(tiny_bert_folder).model, BertEncoder)


def test_minilm_matches_transformers():
    builtin = TextEncoder.from_pretrained("minilm")
    reference = TextEncoder.from_pretrained("minilm", backend="transformers")
    assert isinstance(builtin.model, BertEncoder)
    assert_same_encoding(builtin(PROMPTS), reference(PROMPTS))
    calls = [
        ((PROMPTS[0],), {}),  # one string: flat lists, no padding or truncation
        ((PROMPTS,), {}),  # ragged lists
        ((PROMPTS,), {"truncation": True, "max_length": 12, "padding": "longest"}),
        ((PROMPTS,), {"truncation": True, "max_length": 100, "padding": "max_length"}),
        ((PROMPTS[:2],), {"padding": True, "return_tensors": "pt"}),
        ((PROMPTS,), {"truncation": True, "return_token_type_ids": True}),  # model_max_length
    ]
    for args, options in calls:
        ours, theirs = builtin.tokenizer(*args, **options), reference.tokenizer(*args, **options)
        assert set(ours) == set(theirs) - {"token_type_ids"} | (
            {"token_type_ids"} if options.get("return_token_type_ids") else set()
        )
        for key, value in ours.items():
            expected = theirs[key]
            assert torch.equal(value, expected) if torch.is_tensor(value) else value == expected


def test_minilm_loads_without_importing_transformers():
    script = (
        "import sys\n"
        "from ezaudio.text import TextEncoder\n"
        "encoder = TextEncoder.from_pretrained('minilm')\n"
        "assert encoder('a bell rings').states.shape == (1, 100, 384)\n"
        "print('transformers' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"


def test_prefixed_checkpoint_loads_the_encoder_part(tmp_path):
    """A BertForMaskedLM folder ('bert.' names, an MLM head) gives the same states as AutoModel."""
    tokenizer = make_tokenizer()
    torch.manual_seed(1)
    BertForMaskedLM(tiny_config(len(tokenizer))).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert any(k.startswith("bert.") for k in load_file(tmp_path / "model.safetensors"))
    builtin = TextEncoder.from_pretrained(tmp_path, backend="builtin")
    reference = TextEncoder.from_pretrained(tmp_path, backend="transformers")
    assert_same_encoding(builtin(PROMPTS), reference(PROMPTS))


def test_save_and_reload_with_either_backend(tiny_bert_folder, tmp_path):
    original = TextEncoder.from_pretrained(tiny_bert_folder, max_length=24, padding="longest")
    folder = original.save_pretrained(tmp_path / "text_encoder")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in folder.iterdir()
    }
    for backend in ("builtin", "transformers"):
        loaded = TextEncoder.from_pretrained(folder, backend=backend)
        assert (loaded.max_length, loaded.padding) == (24, "longest")
        assert_same_encoding(original(PROMPTS), loaded(PROMPTS))


def test_dtype_is_applied(tiny_bert_folder):
    encoder = TextEncoder.from_pretrained(tiny_bert_folder, dtype=torch.bfloat16)
    assert encoder.dtype == torch.bfloat16
    assert encoder("a dog barks").states.dtype == torch.bfloat16


def test_unsupported_folders_fall_back_or_fail(tiny_bert_folder, tmp_path):
    config = json.loads((tiny_bert_folder / "config.json").read_text())
    for change, reason in [
        ({"model_type": "roberta"}, "model_type is not 'bert'"),
        ({"hidden_act": "gelu_new"}, "hidden_act is not 'gelu'"),
        ({"position_embedding_type": "relative_key"}, "not absolute"),
        ({"is_decoder": True}, "decoder"),
    ]:
        folder = tmp_path / reason.replace(" ", "_").replace("'", "")
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({**config, **change}))
        (folder / "tokenizer.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"")
        assert reason in unsupported_reason(folder)
        with pytest.raises(CheckpointError, match="the built-in BERT cannot load it"):
            TextEncoder.from_pretrained(folder, backend="builtin")
    assert "config.json is unreadable" in unsupported_reason(tmp_path / "missing")
    no_tokenizer = tmp_path / "no_tokenizer"
    no_tokenizer.mkdir()
    (no_tokenizer / "config.json").write_text(json.dumps(config))
    assert unsupported_reason(no_tokenizer) == "no model.safetensors; no tokenizer.json"
    assert unsupported_reason(tiny_bert_folder) is None


def test_broken_checkpoint_is_a_checkpoint_error(tiny_bert_folder, tmp_path):
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((tiny_bert_folder / name).read_bytes())
    tensors = load_file(tiny_bert_folder / "model.safetensors")
    tensors.pop("encoder.layer.1.output.dense.weight")
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing.*encoder.layer.1.output.dense.weight"):
        TextEncoder.from_pretrained(tmp_path, backend="builtin")
    (tmp_path / "config.json").write_text(
        json.dumps(
            {**json.loads((tiny_bert_folder / "config.json").read_text()), "hidden_size": 64}
        )
    )
    with pytest.raises(CheckpointError, match="size mismatch"):
        TextEncoder.from_pretrained(tmp_path, backend="builtin")
    (tmp_path / "tokenizer.json").write_text("not json")
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        BertTokenizer(tmp_path)


def test_backend_options_are_checked(tiny_bert_folder):
    with pytest.raises(InvalidInputError, match="backend must be one of"):
        TextEncoder.from_pretrained(tiny_bert_folder, backend="onnx")
    with pytest.raises(CheckpointError, match="local folders only"):
        TextEncoder.from_pretrained("google/flan-t5-small", backend="builtin")


def test_tokenizer_without_truncation_pads_to_the_longest(tiny_bert_folder):
    tokenizer = BertTokenizer(tiny_bert_folder)
    batch = tokenizer(
        PROMPTS[:2] + PROMPTS[-1:], max_length=8, padding="longest", return_tensors="pt"
    )
    lengths = batch["attention_mask"].sum(1).tolist()
    assert lengths[:2] == [6, 2] and lengths[2] > 100
    assert batch["input_ids"].shape == (3, lengths[2])
    assert (batch["input_ids"][1, 2:] == tokenizer.pad_token_id).all()
    with pytest.raises(InvalidInputError, match="need padding"):
        tokenizer(PROMPTS[:2], return_tensors="pt")
    with pytest.raises(InvalidInputError, match="needs max_length"):
        tokenizer(PROMPTS[:2], padding="max_length")
