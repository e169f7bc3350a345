"""``python -m vwell_pbx.simulator``: run the simulator from the command line."""

import sys

from vwell_pbx.simulator.cli import run

if __name__ == "__main__":
    sys.exit(run())
