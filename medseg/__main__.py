"""``python -m medseg`` (and ``torchrun -m medseg``) run the command line."""

import sys

from medseg.cli.main import main

sys.exit(main())
