"""`python -m s2ccrop`: the same command line as the `s2ccrop` script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
