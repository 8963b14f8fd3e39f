"""The one owner of loaded models.

A ``Runtime`` is made for one device and loads each model the first time it is asked for, once:

    generator()     the StyleGAN generator (``models.generator.Generator``) on the device
    identity()      the identity panel's models (mapper, dlib identity net) on the same generator
    surroundings()  the face parsing and landmark net that show a face in another code's surroundings
    lpips(net)      LPIPS ("vgg" or "alex") on the device: the inversion's and tuning's loss
    identity_net()  dlib's identity net on the device (the identity models and the inversion share it)
    predictors()    the attribute predictors and dlib's detector / landmarks (CPU)

Whatever needs a model is handed the runtime (or what it returns); no module loads a model behind
its caller's back. The app keeps one runtime and makes a new one when the user changes the device,
so every model then moves together; the CLI makes one per command. Loading is thread-safe: the
render thread and a task thread asking at once get the same object.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Runtime:
    """Models for one device, each loaded once, on demand."""

    def __init__(self, device: str | None = "auto", *, generator_factory: Callable[[], Any] | None = None,
                 mapper_weights: str | Path | None = None, freeze: bool = False) -> None:
        """``freeze``: after each load, move every object alive into the garbage collector's
        permanent generation (``gc.freeze``), so its full collections skip the models. The app
        sets it: a full collection walking the models held the interpreter ~0.1 s, which stalled
        its UI thread mid-drag (bench/gui.py); ``release`` gives them back to the collector."""
        self.device = device or "auto"
        self.freeze = freeze
        self.mapper_weights = Path(mapper_weights) if mapper_weights else None
        self._factory = generator_factory
        self._lock = threading.RLock()
        self._loaded: dict[str, Any] = {}

    def _get(self, key: str, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = load()
                if self.freeze:
                    gc.freeze()
            return self._loaded[key]

    def release(self) -> None:
        """The runtime is being dropped: what ``freeze`` kept from the collector may go again."""
        if self.freeze:
            gc.unfreeze()

    def loaded(self, key: str) -> bool:
        """Whether ``key`` ("generator", "identity", "predictors") is in memory already."""
        return key in self._loaded

    def generator(self) -> Any:
        """The generator (``latentstudio.models.generator.Generator``); FetchError when missing."""
        def load() -> Any:
            if self._factory is not None:
                return self._factory()
            from latentstudio.models.generator import Generator

            return Generator.load(self.device)  # "auto": CUDA when present, else CPU

        return self._get("generator", load)

    def identity(self) -> Any:
        """The identity models (``latentstudio.identity.api.IdentityModels``) on ``generator()``;
        MapperError when the mapper weights are missing or unreadable."""
        def load() -> Any:
            from latentstudio.identity.api import IdentityModels

            return IdentityModels.load(self.generator(), self.mapper_weights, identity_net=self.identity_net(),
                                       surroundings=self.surroundings())

        return self._get("identity", load)

    def surroundings(self) -> Any | None:
        """What shows a face in another code's hair, clothes and background (the identity
        panel's results, a repair: ``identity.surroundings.Surroundings``, the face parsing and
        our landmark net) on the generator's device; None when either is not installed."""
        def load() -> Any:
            from latentstudio.identity.surroundings import load_surroundings

            return load_surroundings(self.generator().device)

        return self._get("surroundings", load)

    def lpips(self, net: str) -> Any:
        """LPIPS with the ``net`` features on the generator's device (``losses.lpips``)."""
        def load() -> Any:
            from latentstudio.losses.lpips import load_lpips

            return load_lpips(net, self.generator().device)

        return self._get("lpips-" + net, load)

    def identity_net(self) -> Any | None:
        """dlib's identity net on the generator's device, or None when it is not installed."""
        def load() -> Any:
            from latentstudio.invert import _load_identity_net

            return _load_identity_net(self.generator().device)

        return self._get("identity_net", load)

    def predictors(self) -> Any:
        """dlib's detector and landmarks and the attribute predictors (``edit.predictors.Models``)."""
        def load() -> Any:
            from latentstudio.edit.predictors import load_models

            return load_models()

        return self._get("predictors", load)

    def identity_reason(self) -> str | None:
        """None when the identity models can be loaded, else why not (one line; loads nothing)."""
        from latentstudio.identity.api import available

        return available(self.mapper_weights)
