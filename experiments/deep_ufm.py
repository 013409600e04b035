"""Run the ``deep_ufm`` experiment: ``python experiments/deep_ufm.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run deep_ufm ...``; see ``meanfield list deep_ufm`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "deep_ufm", *sys.argv[1:]]))
