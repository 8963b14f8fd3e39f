"""``python -m latentstudio.cli``."""

import sys

from latentstudio.cli.commands import main

sys.exit(main())
