"""``python -m tierroute.cli``: the same entry point as the ``tierroute`` script."""

import sys

from tierroute.cli import main

if __name__ == "__main__":
    sys.exit(main())
