"""Run the ``deep_collapse`` experiment: ``python experiments/deep_collapse.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run deep_collapse ...``; see ``meanfield list deep_collapse`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "deep_collapse", *sys.argv[1:]]))
