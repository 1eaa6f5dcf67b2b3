"""Inverse-problem entry point. Not implemented yet: it lands with the inversion issue.

Until then this script only says so and exits with status 2; it does not pretend to solve anything.
"""

import sys

if __name__ == "__main__":
    print("error: inversion is not implemented yet (see the inversion issue).", file=sys.stderr)
    sys.exit(2)
