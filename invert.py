"""Solve inverse problems with a GAN prior (`python invert.py solve ...` / `python invert.py sweep ...`);
the command line is rtil/inverse/cli.py (`python invert.py --help` for everything)."""

import sys

from rtil.inverse.cli import main

if __name__ == "__main__":
    sys.exit(main())
