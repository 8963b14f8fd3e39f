"""Shared fixtures. Models are fetched once (a no-op when `latentstudio models fetch` already ran)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session", autouse=True)
def _models_installed() -> None:
    from latentstudio.models.fetch import fetch

    fetch()
    torch.set_num_threads(max(1, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def generator():
    from latentstudio.models.generator import Generator

    return Generator.load("cpu")
