"""LatentStudio: a face editor built on a StyleGAN-family generator (MobileStyleGAN, W+ space)."""

import os

# torch's CPU allocator backs large tensors with transparent huge pages when this is set before
# torch loads: renders on the CPU run ~2× faster. Set here, the package's first import, so the
# app, the CLI and library users all get it (unless they imported torch first or chose a value).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
