"""Stage `text-evaluator`: train the network whose features every text metric is computed in.

Reads the real text splits (text sets) and the training split's `vocab.json`, trains a
character-level CNN classifier on `--train` with early stopping on `--val` (on a pretext task
when the source is unlabelled; see aigc/text_features.py), scores it on `--test`, and stores the
features of all three splits in the checkpoint so that `evaluate-text` need not recompute them.

Writes `--out` (the text evaluator checkpoint: shape, vocabulary, weights, cached features) and
`--metrics` (test and val accuracy, chance = the majority-class share of test, epochs, seconds);
the training time goes to `--metrics` only, so a re-run keeps the checkpoint's bytes.

    python -m stages.text_evaluator --train data/text/split/train --val data/text/split/val \
        --test data/text/split/test --out models/text/evaluator.pt \
        --metrics metrics/text/evaluator.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aigc.errors import exit_on_error
from aigc.files import write_json
from aigc.params import load_section
from aigc.text_features import (
    TextEvaluatorParams,
    evaluator_task,
    extract_text_features,
    majority_share,
    save_text_evaluator,
    text_accuracy,
    train_text_evaluator,
)
from aigc.text_sets import Vocabulary, load_text_set


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="text set the evaluator learns from")
    parser.add_argument("--val", required=True, help="text set for early stopping")
    parser.add_argument("--test", required=True, help="text set for the reported accuracy")
    parser.add_argument("--out", required=True, help="text evaluator checkpoint to write")
    parser.add_argument("--metrics", required=True, help="JSON summary to write")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with exit_on_error():
        params = load_section(args.params, "text_evaluator", TextEvaluatorParams)

    with exit_on_error():  # a split or the vocabulary missing
        splits = {name: load_text_set(path) for name, path in
                  (("train", args.train), ("val", args.val), ("test", args.test))}  # fmt: skip
        vocabulary = Vocabulary.load(Path(args.train) / "vocab.json")
    with exit_on_error(ValueError):  # splits it cannot learn from (empty, val unlabelled)
        model, summary = train_text_evaluator(splits["train"], splits["val"], vocabulary, params)
    test_texts, test_labels = evaluator_task(splits["test"], model.config.kind, params.seed + 2)
    summary["test_accuracy"] = text_accuracy(model, test_texts, test_labels)
    summary["chance"] = majority_share(test_labels)
    print(f"text evaluator ({summary['kind']}): test accuracy {summary['test_accuracy']:.4f}, "
          f"chance {summary['chance']:.4f}, {summary['epochs']} epochs, "
          f"{summary['seconds']:.0f} s")  # fmt: skip

    cache = {name: (text_set.texts, extract_text_features(model, text_set.texts))
             for name, text_set in splits.items()}  # fmt: skip
    # the wall-clock time goes to the uncached metrics only: in the cached checkpoint it would
    # give a bit-identical re-run a new hash, and DVC would re-run every evaluate-text stage
    meta = {key: value for key, value in summary.items() if key != "seconds"}
    with exit_on_error():  # an output not writable
        save_text_evaluator(args.out, model, meta=meta, features=cache)
        write_json(args.metrics, summary)


if __name__ == "__main__":
    main()
