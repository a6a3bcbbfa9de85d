"""`python -m lambdaop.cli`: the lambdaop command."""

import sys

from lambdaop.cli.main import main

sys.exit(main())
