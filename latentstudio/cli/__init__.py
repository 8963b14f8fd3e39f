"""The ``latentstudio`` command line: its own layer, above the core; nothing in the core imports it.

- ``commands``  the parser, ``main()``, and the commands for models, render, align, invert, bench
- ``edit``      ``boundaries …`` and ``edit``
- ``identity``  ``transfer``, ``deidentify`` and ``identity …``
- ``common``    the user-error type, the core's errors turned into it, progress printers
"""

from latentstudio.cli.commands import main

__all__ = ["main"]
