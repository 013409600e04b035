"""Run the ``normalized`` experiment: ``python experiments/normalized.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run normalized ...``; see ``meanfield list normalized`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "normalized", *sys.argv[1:]]))
