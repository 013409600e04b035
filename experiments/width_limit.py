"""Run the ``width_limit`` experiment: ``python experiments/width_limit.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run width_limit ...``; see ``meanfield list width_limit`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "width_limit", *sys.argv[1:]]))
