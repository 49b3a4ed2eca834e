#!/usr/bin/env python3
"""The benchmark script: see `python -m seqdata.bench --help`."""

import sys

from seqdata.bench import main

if __name__ == "__main__":
    sys.exit(main())
