"""Shared fixtures. Models are fetched once (a no-op when `latentstudio models fetch` already ran),
except for tests marked ``no_models``: those must pass without any model file."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


_fetched: list[bool] = []


@pytest.fixture(autouse=True)
def _models_installed(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("no_models") or _fetched:
        return
    from latentstudio.models.fetch import fetch

    fetch()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    _fetched.append(True)


@pytest.fixture(scope="session")
def generator():
    from latentstudio.models.generator import Generator

    return Generator.load("cpu")
