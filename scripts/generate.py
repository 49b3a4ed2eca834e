#!/usr/bin/env python3
"""The `generate` script: the same options as `seqdata generate`."""

import sys

from seqdata.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
