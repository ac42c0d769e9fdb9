# SPDX-License-Identifier: Apache-2.0
"""python -m archdb_torch {train,predict,parity} — see docs/gpu-trainer.md."""

import argparse
import json
import sys
import time

import torch

from .data import Batcher, TrainingSet
from .model import Predictor

# Agreement required between archdb (candle, deduplicated rows) and this per-node forward pass:
# |a − b| ≤ TOLERANCE · max(1, |b|) for every output, embedding components included.
TOLERANCE = 1e-4


def device_of(name):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def predictions(artifact, set_path, device):
    data = TrainingSet(set_path)
    predictor = Predictor.load(artifact, device)
    out = predictor.predict(Batcher(data, device), data.flops)
    return data, out


def worst_errors(ours, reference):
    """Largest scaled error per output over all graphs."""
    worst = {}
    for a, b in zip(ours, reference, strict=True):
        for key in ("accuracy", "std", "ood_score", "membership_entropy", "embedding"):
            xs = a[key] if key == "embedding" else [a[key]]
            ys = b[key] if key == "embedding" else [b[key]]
            for x, y in zip(xs, ys, strict=True):
                err = abs(x - y) / max(1.0, abs(y))
                worst[key] = max(worst.get(key, 0.0), err)
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m archdb_torch")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a predictor on a training-set file")
    t.add_argument("--set", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--device", default="auto", help="cuda, cpu or auto (cuda when available)")
    t.add_argument("--config", default="{}", help="JSON overrides of the set's train_config")
    t.add_argument("--threads", type=int, help="CPU threads of torch (default: torch's choice)")
    p = sub.add_parser("predict", help="predict a set's graphs with an archdb artifact")
    p.add_argument("--artifact", required=True)
    p.add_argument("--set", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    c = sub.add_parser("parity", help="compare with archdb's predictions (archdb predict-set)")
    c.add_argument("--artifact", required=True)
    c.add_argument("--set", required=True)
    c.add_argument("--reference", required=True)
    c.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = device_of(args.device)

    if args.command == "train":
        from .train import train

        if args.threads:
            torch.set_num_threads(args.threads)
        data = TrainingSet(args.set)
        started = time.time()
        predictor = train(data, device, json.loads(args.config), progress=print_report)
        predictor.save(args.out)
        print(json.dumps({"out": args.out, "seconds": time.time() - started, "device": device}), flush=True)
    elif args.command == "predict":
        data, out = predictions(args.artifact, args.set, device)
        with open(args.out, "w") as f:
            json.dump({"architecture_ids": data.ids.tolist(), "predictions": out}, f)
    else:
        data, out = predictions(args.artifact, args.set, device)
        with open(args.reference) as f:
            reference = json.load(f)
        if reference["architecture_ids"] != data.ids.tolist():
            sys.exit("the reference predicts other graphs than the set holds")
        worst = worst_errors(out, reference["predictions"])
        ok = all(v <= TOLERANCE for v in worst.values())
        summary = {"device": device, "graphs": len(out), "tolerance": TOLERANCE}
        print(json.dumps({**summary, "max_scaled_error": worst, "ok": ok}))
        sys.exit(0 if ok else 1)


def print_report(report):
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
