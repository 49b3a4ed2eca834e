import sys

from seqdata.cli import main

sys.exit(main())
