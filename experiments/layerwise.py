"""Run the ``layerwise`` experiment: ``python experiments/layerwise.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run layerwise ...``; see ``meanfield list layerwise`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "layerwise", *sys.argv[1:]]))
