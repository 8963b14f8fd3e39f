"""The reference runtime: the original OpenVINO IR of the carrier, for tests and benchmarks only.

``openvino`` is a test extra; the app never imports this module.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Any

from latentstudio.models.fetch import _download
from latentstudio.models.registry import RANDOM_FACE


def openvino_ir(source_dir: Path | None = None) -> tuple[Any, Any]:
    """(mapping, synthesis) compiled by OpenVINO in fp32 from the pinned random-face wheel.

    The wheel is fetched again by pip (or taken from ``source_dir``) into a temp dir.
    """
    import openvino as ov

    tmp = Path(tempfile.mkdtemp(prefix="latentstudio-ir-"))
    archive = _download(RANDOM_FACE, tmp, source_dir, lambda m: None)
    with zipfile.ZipFile(archive) as zf:
        for n in zf.namelist():
            if "/data/" in n and n.endswith((".xml", ".bin")):
                (tmp / Path(n).name).write_bytes(zf.read(n))
    core = ov.Core()
    cfg = {"INFERENCE_PRECISION_HINT": "f32"}  # the CPU plugin defaults to bf16 where supported
    return (core.compile_model(str(tmp / "MappingNetwork.xml"), "CPU", cfg),
            core.compile_model(str(tmp / "SynthesisNetwork.xml"), "CPU", cfg))
