"""`python -m app.bench [args]`: the same as `alert-history bench [args]`."""

import sys

from app.bench.cli import main

sys.exit(main(sys.argv[1:]))
