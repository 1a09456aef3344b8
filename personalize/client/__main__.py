"""`python -m personalize.client ...`: the same as the `personalize-client` console script."""

import sys

from personalize.client import main

# Guarded: `predict --xmp` decodes in spawned worker processes, which import the main module again.
if __name__ == "__main__":
    sys.exit(main())
