import sys

from rtil.cli import main

sys.exit(main())
