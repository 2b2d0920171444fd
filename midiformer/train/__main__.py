"""python -m midiformer.train. Under torchrun, ranks other than 0 run their Hydra job quietly and write
nothing into the run folder (the submitit launcher does the same for its tasks:
hydra_plugins/midiformer_launchers)."""
import os
import sys

from midiformer.common import QUIET_RANK_OVERRIDES
from midiformer.train.loop import main

if __name__ == "__main__":
    if int(os.environ.get("RANK", "0")) > 0:
        sys.argv.extend(QUIET_RANK_OVERRIDES)
    main()
