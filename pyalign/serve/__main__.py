"""``python -m pyalign.serve [flags]``: the same as ``pyalign serve``."""
import sys

from .cli import main

sys.exit(main())
