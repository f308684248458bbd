"""Shared fixtures: the repository root and small helpers for data tests."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def class_list() -> Path:
    return ROOT / "config" / "imagenet100.txt"
