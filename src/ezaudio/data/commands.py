"""Subcommands of `ezaudio` that belong to ezaudio.data (registered by ezaudio.cli)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the ``ezaudio`` parser (none yet)."""
