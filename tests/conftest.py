"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def reference_dir() -> Path:
    """Folder of the reference outputs of the official implementation."""
    return Path(__file__).parent / "data_files" / "reference"
