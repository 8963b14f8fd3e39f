"""Entry point frozen by PyInstaller: the same ``latentstudio`` command (no arguments: the editor)."""

import sys

from latentstudio.cli import main

if __name__ == "__main__":
    sys.exit(main())
