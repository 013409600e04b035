"""Run the ``pretrained_head`` experiment: ``python experiments/pretrained_head.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run pretrained_head ...``; see ``meanfield list pretrained_head`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "pretrained_head", *sys.argv[1:]]))
