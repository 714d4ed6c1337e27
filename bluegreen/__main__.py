"""`python -m bluegreen ...`: the release tool."""

import sys

from bluegreen.release.launch import main

sys.exit(main())
