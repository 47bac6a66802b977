"""A built-in BERT encoder and tokenizer that load without ``transformers``.

Importing ``transformers`` and building a model through ``AutoModel`` takes 4-5 s
on a 2-core CPU: longer than generating 10 s of audio with the bundled default
model. Plain BERT encoders (all-MiniLM-L6-v2, the default's text encoder, among
them) are small enough to implement here: the network below is the standard
post-LayerNorm BERT encoder (Devlin et al., 2019) with the parameter names of the
Hugging Face checkpoints, so it reads their ``model.safetensors`` as they are,
and the tokenizer is the checkpoint's own ``tokenizer.json`` run by the
``tokenizers`` library. :class:`~ezaudio.text.encoder.TextEncoder` uses them for
local folders that qualify (:func:`unsupported_reason`) and ``transformers``
for everything else.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ezaudio.errors import CheckpointError, InvalidInputError

WEIGHTS_NAME = "model.safetensors"
TOKENIZER_NAME = "tokenizer.json"
#: Tokenizer files copied by :meth:`BertTokenizer.save_pretrained` when present.
TOKENIZER_FILES = (TOKENIZER_NAME, "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
#: Checkpoint tensors the encoder does not use (the pooler; a constant index buffer).
UNUSED_KEYS = ("pooler.", "embeddings.position_ids")


def unsupported_reason(folder: str | os.PathLike[str]) -> str | None:
    """None when ``folder`` holds a plain BERT encoder this module loads, else why not.

    Qualifies: ``config.json`` with ``model_type`` ``"bert"``, exact GELU, absolute
    positions, no decoder or cross-attention; one ``model.safetensors``; a
    ``tokenizer.json``.
    """
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError) as error:
        return f"config.json is unreadable ({type(error).__name__})"
    if not isinstance(config, dict):
        return "config.json is not a JSON object"
    checks = {
        "model_type is not 'bert'": config.get("model_type") != "bert",
        "hidden_act is not 'gelu'": config.get("hidden_act", "gelu") != "gelu",
        "position embeddings are not absolute": config.get("position_embedding_type", "absolute")
        != "absolute",
        "it is a decoder": bool(config.get("is_decoder") or config.get("add_cross_attention")),
        f"no {WEIGHTS_NAME}": not (folder / WEIGHTS_NAME).is_file(),
        f"no {TOKENIZER_NAME}": not (folder / TOKENIZER_NAME).is_file(),
    }
    reasons = [reason for reason, failed in checks.items() if failed]
    return "; ".join(reasons) if reasons else None


@dataclass(frozen=True)
class BertConfig:
    """The shape of a BERT encoder, read from a Hugging Face ``config.json``."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BertConfig:
        names = cls.__dataclass_fields__
        config = cls(**{key: values[key] for key in names if key in values})
        if config.hidden_size % config.num_attention_heads:
            raise CheckpointError(
                f"hidden_size {config.hidden_size} is not divisible by "
                f"num_attention_heads {config.num_attention_heads}"
            )
        return config


class EncoderOutput(NamedTuple):
    """What :class:`BertEncoder` returns; ``last_hidden_state`` as in ``transformers``."""

    last_hidden_state: torch.Tensor


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        positions = torch.arange(length, device=input_ids.device)  # [T]
        # token type 0 everywhere: one sentence per prompt
        states = (
            self.word_embeddings(input_ids)  # [B, T, D]
            + self.position_embeddings(positions)[None]  # [1, T, D]
            + self.token_type_embeddings.weight[0]  # [D]
        )
        return self.LayerNorm(states)


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, states: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        batch, length, width = states.shape

        def split(x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, H, T, D/H]
            return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        q, k, v = split(self.query(states)), split(self.key(states)), split(self.value(states))
        # softmax(q k^T / sqrt(d) + mask) v; key_mask: [B, 1, 1, T] bool, True = attend
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)  # [B, H, T, D/H]
        return mixed.transpose(1, 2).reshape(batch, length, width)


class ResidualOutput(nn.Module):
    """Post-LN residual: LayerNorm(dense(x) + residual), after attention and after the MLP
    (``attention.output`` and ``output`` in the checkpoint names)."""

    def __init__(self, in_features: int, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(hidden) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = ResidualOutput(config.hidden_size, config)

    def forward(self, states: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(states, key_mask), states)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(states))  # exact (erf) GELU, BERT's "gelu"


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = ResidualOutput(config.intermediate_size, config)

    def forward(self, states: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        attended = self.attention(states, key_mask)
        return self.output(self.intermediate(attended), attended)


class BertLayers(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


class BertEncoder(nn.Module):
    """BERT's encoder stack (no pooler), called like a ``transformers`` ``BertModel``.

    ``model(input_ids=[B, T] long, attention_mask=[B, T] 0/1).last_hidden_state``
    is ``[B, T, hidden_size]``.
    """

    def __init__(self, config: BertConfig, raw_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        self._raw_config = dict(raw_config) if raw_config is not None else None
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertLayers(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise InvalidInputError(
                f"{input_ids.shape[1]} tokens exceed the encoder's "
                f"{self.config.max_position_embeddings} positions"
            )
        key_mask = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, T]
        states = self.embeddings(input_ids)  # [B, T, D]
        for layer in self.encoder.layer:
            states = layer(states, key_mask)
        return EncoderOutput(last_hidden_state=states)

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike[str], dtype: torch.dtype = torch.float32
    ) -> BertEncoder:
        """Build from ``config.json`` and load ``model.safetensors`` (a ``bert.`` prefix is
        stripped; the pooler is ignored; any other missing or extra tensor is an error)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            raw = json.loads((folder / "config.json").read_text("utf-8"))
            tensors = load_file(str(folder / WEIGHTS_NAME))
        except (OSError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"{folder}: cannot read the BERT checkpoint ({error})") from error
        try:
            config = BertConfig.from_dict(raw)
        except TypeError as error:
            raise CheckpointError(f"{folder}/config.json: {error}") from error
        if any(key.startswith("bert.") for key in tensors):
            tensors = {k[len("bert.") :]: v for k, v in tensors.items() if k.startswith("bert.")}
        wanted = {k: v for k, v in tensors.items() if not k.startswith(UNUSED_KEYS)}
        model = cls(config, raw)  # (a meta-device build would import torch._prims: seconds)
        try:
            missing, unexpected = model.load_state_dict(wanted, strict=False, assign=True)
        except RuntimeError as error:  # shapes that contradict config.json
            raise CheckpointError(f"{folder}: {str(error).strip().splitlines()[-1]}") from error
        if missing or unexpected:
            raise CheckpointError(
                f"{folder}: not a BERT encoder checkpoint (missing {sorted(missing)[:4]}, "
                f"unexpected {sorted(unexpected)[:4]})"
            )
        return model.to(dtype).eval()

    def save_pretrained(self, folder: str | os.PathLike[str]) -> None:
        """Write ``config.json`` and ``model.safetensors``, readable by ``transformers`` too."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        raw = self._raw_config or {"model_type": "bert", **self.config.__dict__}
        (folder / "config.json").write_text(json.dumps(raw, indent=2) + "\n", "utf-8")
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})


class BertTokenizer:
    """A checkpoint's ``tokenizer.json`` behind the calls ``transformers`` tokenizers take.

    ``tokenizer(texts, max_length=100, padding="max_length", truncation=True,
    return_tensors="pt")`` returns ``{"input_ids": [B, T] long, "attention_mask":
    [B, T] long}``: the special tokens of the file's post-processor ([CLS] ... [SEP]
    for BERT), cut to ``max_length`` tokens (specials included), padded on the right.
    As in ``transformers``, one string gives flat lists, ``return_tensors=None`` gives
    lists, ``padding`` is False / ``"do_not_pad"``, True / ``"longest"`` or
    ``"max_length"``, and truncation without ``max_length`` uses ``model_max_length``.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        try:
            self._tokenizer = Tokenizer.from_file(str(self.folder / TOKENIZER_NAME))
            padding = json.loads((self.folder / TOKENIZER_NAME).read_text("utf-8")).get("padding")
        except Exception as error:  # tokenizers raises a bare Exception on bad files
            raise CheckpointError(
                f"{self.folder}: unreadable {TOKENIZER_NAME} ({error})"
            ) from error
        self._tokenizer.no_padding()
        self._truncation: int | None = None
        pad_id = (padding or {}).get("pad_id")
        if pad_id is None:
            pad_id = self._tokenizer.token_to_id("[PAD]")
        self.pad_token_id = int(pad_id or 0)
        self.model_max_length = _model_max_length(self.folder)

    def __call__(
        self,
        text: str | list[str],
        *,
        max_length: int | None = None,
        padding: bool | str = False,
        truncation: bool = False,
        return_attention_mask: bool = True,
        return_token_type_ids: bool = False,
        return_tensors: str | None = None,
    ) -> dict[str, Any]:
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        if padding not in (False, True, "do_not_pad", "longest", "max_length"):
            raise InvalidInputError(f"unknown padding {padding!r}")
        if return_tensors not in (None, "pt"):
            raise InvalidInputError(f"return_tensors must be None or 'pt', got {return_tensors!r}")
        if padding == "max_length" and max_length is None:
            raise InvalidInputError("padding='max_length' needs max_length")
        limit = (max_length or self.model_max_length) if truncation else None
        if limit != self._truncation:
            if limit is None:
                self._tokenizer.no_truncation()
            else:
                self._tokenizer.enable_truncation(limit)
            self._truncation = limit
        rows = [encoding.ids for encoding in self._tokenizer.encode_batch(texts)]
        longest = max(len(row) for row in rows)
        width = {"max_length": max(max_length or 0, longest), "longest": longest, True: longest}
        pad_to = width.get(padding)
        if return_tensors == "pt" and pad_to is None and len({len(row) for row in rows}) > 1:
            raise InvalidInputError("tensors of prompts of different lengths need padding")
        pad_to = pad_to or longest
        masks = [[1] * len(row) + [0] * (pad_to - len(row)) for row in rows]
        rows = [row + [self.pad_token_id] * (pad_to - len(row)) for row in rows]
        batch: dict[str, Any] = {"input_ids": rows}
        if return_attention_mask:
            batch["attention_mask"] = masks
        if return_token_type_ids:
            batch["token_type_ids"] = [[0] * pad_to for _ in rows]
        if return_tensors == "pt":
            return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}
        if padding in (False, "do_not_pad"):  # unpadded lists keep their own lengths
            batch = {
                key: [v[: len(m) - m.count(0)] for v, m in zip(value, masks)]
                for key, value in batch.items()
            }
        return {key: value[0] for key, value in batch.items()} if single else batch

    def save_pretrained(self, folder: str | os.PathLike[str]) -> None:
        """Copy the tokenizer files this one was read from into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in TOKENIZER_FILES:
            source = self.folder / name
            if source.is_file() and source.resolve() != (folder / name).resolve():
                shutil.copyfile(source, folder / name)


def _model_max_length(folder: Path, default: int = 512) -> int:
    """``model_max_length`` of ``tokenizer_config.json`` when it is a sane integer, else 512."""
    try:
        value = json.loads((folder / "tokenizer_config.json").read_text("utf-8"))[
            "model_max_length"
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return default
    return value if isinstance(value, int) and 0 < value < 1_000_000 else default


def load_bert(
    folder: str | os.PathLike[str], dtype: torch.dtype
) -> tuple[BertTokenizer, BertEncoder]:
    """Tokenizer and encoder of a folder that :func:`unsupported_reason` accepts."""
    return BertTokenizer(folder), BertEncoder.from_folder(folder, dtype)
