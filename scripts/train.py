#!/usr/bin/env python
"""Meta-train an RL meta-learner: the same as ``metarl train``.

    python scripts/train.py --algo maml-trpo --env metarl/Navigation2D-v0 --seed 0 --logdir runs/nav
"""

import sys

from metarl.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
