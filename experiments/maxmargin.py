"""Run the ``maxmargin`` experiment (see ``meanfield list maxmargin``).

Usage: ``python experiments/maxmargin.py [--set key=value ...] [--out DIR] [--device cuda]``
(any option of ``meanfield run``); bigger runs are just ``--set`` overrides.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "maxmargin", *sys.argv[1:]]))
