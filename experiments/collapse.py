"""Run the ``collapse`` experiment: ``python experiments/collapse.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run collapse ...``; see ``meanfield list collapse`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "collapse", *sys.argv[1:]]))
