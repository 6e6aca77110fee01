"""Stage `evaluate-text`: score one model's texts (or any texts) on the text evaluator's ruler.

Reads `--samples` (a text set folder, with an optional `info.json` {family, num_samples,
conditional}; a `.txt` of `%`-separated texts or one per line; a `.csv` with a `text` column),
the text evaluator checkpoint, and the real splits: `--reference` (what samples are compared
with), `--heldout` (its size is the real row's N, at which the `*_at_real_n` keys score the
samples like for like) and `--train` (what a copy copies). With `--checkpoint`, also the model's
held-out bits per character on `--reference` (aigc.text_sampling.held_out_bits). Every row also
carries `unigram_bits_per_character`, the baseline a language model must beat. Writes the flat
JSON of aigc/text_ruler.py to `--out` and prints a one-line summary.

    python -m stages.evaluate_text --samples data/text/split/val --name real \
        --evaluator models/text/evaluator.pt --reference data/text/split/test \
        --heldout data/text/split/val --train data/text/split/train --out metrics/text/real.json
    python -m stages.evaluate_text --samples other_tool.txt --out metrics/text/other.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from aigc.checkpoint import CheckpointError, load_model
from aigc.errors import exit_on_error
from aigc.files import write_json
from aigc.params import load_section
from aigc.text_features import cached_text_features, load_text_evaluator, read_text_samples
from aigc.text_ruler import (
    TextEvaluateParams,
    check_counts,
    score_texts,
    unigram_bits_per_character,
)
from aigc.text_sampling import held_out_bits
from aigc.text_sets import load_text_set


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", required=True, help="text set folder, .txt or .csv")
    parser.add_argument("--name", help="row name (default: the samples' file or folder name)")
    parser.add_argument("--checkpoint", help="the language model that wrote the samples")
    parser.add_argument("--evaluator", default="models/text/evaluator.pt")
    parser.add_argument("--reference", default="data/text/split/test")
    parser.add_argument("--heldout", default="data/text/split/val")
    parser.add_argument("--train", default="data/text/split/train")
    parser.add_argument("--out", help="metrics JSON to write (default: print only)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with exit_on_error():
        params = load_section(args.params, "text_evaluate", TextEvaluateParams)
    name = args.name or Path(args.samples).stem

    started = time.perf_counter()
    with exit_on_error(CheckpointError, ValueError):  # inputs missing, unreadable or too few
        samples = read_text_samples(args.samples)
        evaluator, evaluator_checkpoint = load_text_evaluator(args.evaluator)
        reference, train = load_text_set(args.reference), load_text_set(args.train)
        real_n = len(load_text_set(args.heldout))
        check_counts(len(samples), len(reference), params)
    features = {}
    for role, texts in (("samples", samples.texts), ("reference", reference.texts)):
        features[role], hit = cached_text_features(
            evaluator, evaluator_checkpoint, texts, params.batch_size
        )
        print(f"features of {role}: {len(texts)} texts ({'cached' if hit else 'extracted'})")

    classes = list(evaluator.config.classes) if evaluator.classifies else []
    labels = samples.labels if list(samples.classes) == classes else None
    metrics = score_texts(samples.texts, features["samples"], features["reference"],
                          train.texts, params, classes, labels, real_n)  # fmt: skip
    metrics["evaluator_test_accuracy"] = evaluator_checkpoint["meta"].get("test_accuracy")
    metrics["unigram_bits_per_character"] = unigram_bits_per_character(train.texts, reference.texts)
    if args.checkpoint:
        with exit_on_error(CheckpointError):
            model, _ = load_model(args.checkpoint)
        metrics.update(held_out_bits(model, reference, params.batch_size))

    with exit_on_error():  # an output not writable
        if args.out:
            write_json(args.out, metrics)
    print(summary_line(name, metrics, time.perf_counter() - started))


def summary_line(name: str, metrics: dict, seconds: float) -> str:
    def show(key: str) -> str:
        value = metrics.get(key)
        return "-" if value is None else f"{value:.3g}"

    parts = [f"{metrics['num_samples']} texts",
             f"FD {show('frechet_distance')} ± {show('frechet_distance_se')}"]  # fmt: skip
    parts += [f"{key} {show(key)}" for key in ("precision", "recall", "coverage", "class_kl",
              "label_accuracy", "distinct_2", "self_bleu", "copy_span_share")]  # fmt: skip
    if metrics.get("bits_per_character") is not None:
        parts.append(f"bpc {show('bits_per_character')}")
    return f"evaluate-text {name}: " + ", ".join(parts) + f" ({seconds:.1f} s)"


if __name__ == "__main__":
    main()
