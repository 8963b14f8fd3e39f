"""Where LatentStudio keeps its files: the model cache and user state."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def home() -> Path:
    """Root of LatentStudio's cache (``$LATENTSTUDIO_HOME`` or the platform user cache dir)."""
    env = os.environ.get("LATENTSTUDIO_HOME")
    root = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("latentstudio"))
    return root


def models_dir() -> Path:
    """Folder holding converted model weights (safetensors) and their manifests."""
    return home() / "models"


def state_dir() -> Path:
    """Folder for autosave, recent files and other per-user state."""
    return home() / "state"
