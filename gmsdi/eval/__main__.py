"""`python -m gmsdi.eval`: see `gmsdi.eval.cli`."""

import sys

from gmsdi.eval.cli import main

if __name__ == "__main__":
    sys.exit(main())
