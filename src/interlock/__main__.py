"""``python -m interlock ...``: see interlock.cli."""
import sys

from .cli import main

# The guard matters: under the spawn and forkserver start methods, children
# import the parent's main module (this file) as ``__mp_main__``.
if __name__ == "__main__":
    sys.exit(main())
