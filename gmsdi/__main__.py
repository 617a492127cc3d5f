"""`python -m gmsdi`: see `gmsdi.cli`."""

import sys

from gmsdi.cli import main

if __name__ == "__main__":
    sys.exit(main())
