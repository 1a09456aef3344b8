"""`python -m personalize.client ...`: the same as the `personalize-client` console script."""

import sys

from personalize.client import main

sys.exit(main())
