"""Stage `evaluator`: train the network whose features every metric is computed in.

Reads the real splits (image sets), trains a CNN classifier on `--train` with early stopping on
`--val` (an autoencoder when the source is unlabelled), scores it on `--test`, and stores the
features of all three splits in the checkpoint so that `evaluate` need not recompute them.

Writes `--out` (the evaluator checkpoint) and `--metrics` (accuracy, epochs, seconds, kind); the
training time goes to `--metrics` only, so a re-run that changes nothing else keeps the
checkpoint's hash.

    python -m stages.evaluator --train data/split/train --val data/split/val \
        --test data/split/test --out models/evaluator.pt --metrics metrics/evaluator.json
"""

from __future__ import annotations

import argparse

from aigc.devices import resolve_device
from aigc.errors import exit_on_error
from aigc.features import (
    EvaluatorParams,
    extract_features,
    save_evaluator,
    score_split,
    train_evaluator,
)
from aigc.files import write_json
from aigc.imagesets import load_image_set
from aigc.params import load_section


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="image set the evaluator learns from")
    parser.add_argument("--val", required=True, help="image set for early stopping")
    parser.add_argument("--test", required=True, help="image set for the reported accuracy")
    parser.add_argument("--out", required=True, help="evaluator checkpoint to write")
    parser.add_argument("--metrics", required=True, help="JSON summary to write")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with exit_on_error():
        params = load_section(args.params, "evaluator", EvaluatorParams)
    with exit_on_error():  # cuda without a GPU
        resolve_device(params.device, "evaluator.device")

    with exit_on_error():  # a split missing or not an image set
        train, val, test = [load_image_set(path) for path in (args.train, args.val, args.test)]
    model, summary = train_evaluator(train, val, params)
    device = summary["device"]
    tested = score_split(model, test, device=device)
    summary.update({f"test_{name}": value for name, value in tested.items()})
    if summary["kind"] == "classifier":
        summary["classes"] = len(train.classes)
        print(f"evaluator: test accuracy {summary['test_accuracy']:.4f}")
    else:  # no labels: accuracy does not exist, and is not invented
        summary.update(test_accuracy=None, val_accuracy=None)
        print(f"evaluator: test reconstruction loss {summary['test_loss']:.4f}")

    cache = {
        name: (image_set.images, extract_features(model, image_set.images, device=device))
        for name, image_set in (("train", train), ("val", val), ("test", test))
    }
    # the wall-clock time goes to the uncached metrics only: in the cached checkpoint it would
    # give a bit-identical re-run a new hash, and DVC would re-run every evaluate stage
    meta = {key: value for key, value in summary.items() if key != "seconds"}
    with exit_on_error():  # an output not writable
        save_evaluator(args.out, model, meta=meta, features=cache)
        write_json(args.metrics, summary)


if __name__ == "__main__":
    main()
