#!/usr/bin/env python
"""Meta-train a supervised few-shot learner: the same as ``metarl fewshot``.

    python scripts/train_fewshot.py --algo maml --dataset sinusoid --seed 0 --logdir runs/maml-sinusoid
    python scripts/train_fewshot.py --algo protonet --dataset omniglot --seed 0 --logdir runs/protonet

Settings per learner and dataset: metarl/presets/<algo>.yaml; results: docs/results/fewshot.md.
"""

import sys

from metarl.cli import main

if __name__ == "__main__":
    sys.exit(main(["fewshot", *sys.argv[1:]]))
