#!/usr/bin/env python
"""Meta-train a supervised few-shot learner: the same as ``metarl fewshot``.

    python scripts/train_fewshot.py --method maml --dataset sinusoid --seed 0 --logdir runs/maml-sinusoid
    python scripts/train_fewshot.py --method protonet --dataset omniglot --seed 0 --logdir runs/protonet

See docs/fewshot.md for the protocol and the default settings of each method.
"""

import sys

from metarl.cli import main

if __name__ == "__main__":
    sys.exit(main(["fewshot", *sys.argv[1:]]))
