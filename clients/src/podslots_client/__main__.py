"""`python -m podslots_client`: the operators' CLI, as the `podslots` console script."""

import sys

from podslots_client.cli import main

sys.exit(main())
