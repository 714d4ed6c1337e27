"""`python -m bluegreen ...`: the release tool."""

import sys

from bluegreen.release.cli import main

sys.exit(main())
