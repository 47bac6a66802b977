"""Frozen text encoders (FLAN-T5, MiniLM, any BERT-like model): prompts -> token states + mask."""

from ezaudio.text.encoder import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_PADDING,
    KINDS,
    MINILM_NAME,
    PADDINGS,
    SETTINGS_NAME,
    TextEncoder,
    TextEncoding,
    hub_offline,
    hub_reachable,
    minilm_folder,
)

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_PADDING",
    "KINDS",
    "MINILM_NAME",
    "PADDINGS",
    "SETTINGS_NAME",
    "TextEncoder",
    "TextEncoding",
    "hub_offline",
    "hub_reachable",
    "minilm_folder",
]
