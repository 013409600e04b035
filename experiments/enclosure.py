"""Run the ``enclosure`` experiment: ``python experiments/enclosure.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run enclosure ...``; see ``meanfield list enclosure`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "enclosure", *sys.argv[1:]]))
