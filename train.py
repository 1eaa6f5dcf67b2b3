"""Training entry point (LightningCLI). Not implemented yet: it lands with the training issue.

Until then this script only says so and exits with status 2; it does not pretend to train.
"""

import sys

if __name__ == "__main__":
    print("error: training is not implemented yet (see the training issue); "
          "`python -m rtil demo` builds, samples and exports untrained generators.", file=sys.stderr)
    sys.exit(2)
