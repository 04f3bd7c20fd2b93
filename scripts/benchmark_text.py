#!/usr/bin/env python
"""Sentences per second of each text encoder, in inference and in training (the ``metarl[text]`` extra).

    python scripts/benchmark_text.py                       # BANKING77's test sentences, both encoders
    python scripts/benchmark_text.py --sentences 512 --json runs/bench_text.json
    python scripts/benchmark_text.py --encoders minilm --trainable-layers 6 [--lora-rank 8]

For each encoder, on the same sentences (``--sentences`` of BANKING77, in batches of ``--batch``):

* ``tokenise``: the ``tokenizers`` pass alone (done once per dataset in a run);
* ``inference``: embedding already tokenised sentences without gradients, in batches of similar length cut
  to their longest sentence (the meta-test's pass, ``embed_texts``);
* ``training``: forward, backward and an outer-loop Adam step of what meta-training trains (WordLlama's sparse
  table with lazy Adam; MiniLM's top ``--trainable-layers`` layers), batches cut to their longest sentence as
  episodes are, with a ProtoNet-style loss on the embeddings.

Each runs ``--repeats`` times and the best counts; threads: ``--threads`` (default 1, as training runs).
"""

from __future__ import annotations

import argparse
import time

import torch

from metarl.fewshot.outer import OuterAdam
from metarl.fewshot.text import load_text_dataset
from metarl.fewshot.text_encoders import TEXT_ENCODERS, embed_texts, make_text_encoder, trim_padding
from metarl.rundir import write_json_atomic


def _best_rate(run, count: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--trainable-layers", type=int, default=1)
    parser.add_argument("--lora-rank", type=int, default=0, help="MiniLM: train LoRA adapters of this rank instead")
    parser.add_argument("--encoders", nargs="+", default=list(TEXT_ENCODERS), choices=TEXT_ENCODERS)
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    texts = list(load_text_dataset("banking77").texts[:args.sentences])
    n = len(texts)
    results: dict[str, dict[str, float]] = {}
    for name in args.encoders:
        encoder = make_text_encoder(name, trainable_layers=args.trainable_layers if name == "minilm" else 0,
                                    lora_rank=args.lora_rank if name == "minilm" else 0)
        ids = encoder.tokenize(texts)
        batches = [ids[i:i + args.batch] for i in range(0, n, args.batch)]
        optimizer = OuterAdam(encoder, lr=1e-5)  # as meta-training: lazy Adam on WordLlama's sparse table

        def inference() -> None:
            embed_texts(encoder, ids, args.batch)

        def training() -> None:
            for batch in batches:
                emb = encoder(trim_padding(batch))  # as episodes: cut to their longest sentence
                loss = torch.cdist(emb[:5], emb[5:]).pow(2).mean()  # any differentiable use of the embeddings
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

        results[name] = {"tokenise": _best_rate(lambda: encoder.tokenize(texts), n, args.repeats),
                         "inference": _best_rate(inference, n, args.repeats),
                         "training": _best_rate(training, n, args.repeats)}
    print(f"{n} BANKING77 sentences, batches of {args.batch}, {args.threads} thread(s), best of {args.repeats}; "
          f"MiniLM trains its top {args.trainable_layers} layers"
          + (f" through rank-{args.lora_rank} LoRA adapters" if args.lora_rank else ""))
    print(f"{'encoder':<10} {'tokenise/s':>12} {'inference/s':>12} {'training/s':>12}")
    for name, r in results.items():
        print(f"{name:<10} {r['tokenise']:>12,.0f} {r['inference']:>12,.0f} {r['training']:>12,.0f}")
    out = {"sentences": n, "batch": args.batch, "threads": args.threads, "trainable_layers": args.trainable_layers,
           "lora_rank": args.lora_rank,
           "sentences_per_second": results}
    if args.json:
        write_json_atomic(args.json, out, make_parents=True)
    return out


if __name__ == "__main__":
    main()
