"""The text ruler: every number `evaluate-text` reports for a set of texts, as one flat dict.

Nothing is measured twice in the project: the distribution and class metrics are aigc/metrics.py's
own functions (the image ruler's), fed the text evaluator's features (aigc/text_features.py); the
diversity and memorisation measures are aigc/text_metrics.py's. This module puts them together:

- Fréchet distance (`frechet_distance`, ± its bootstrap `frechet_distance_se`) in the evaluator's
  embedding standardised by the reference set, as the image FID is (see aigc/metrics.py);
- precision/recall and density/coverage on the raw embedding;
- the same four and the Fréchet distance again on `real_n` samples (`*_at_real_n`): the real
  row's N (the held-out split's size), so a model that writes more texts is compared like for
  like (FID's bias and the k-NN metrics depend on N);
- class metrics on the evaluator's predicted classes (shares, classes covered, class KL, the
  Inception-style score) and, for conditional samples, `label_accuracy` beside `label_chance`;
- distinct-n, self-BLEU, verbatim and copy-span shares against the training texts, mean length;
- `unigram_bits_per_character`: the floor any language model must beat (a property of the data,
  the same in every row).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from aigc.metrics import (
    Yardstick,
    check_finite,
    class_metrics,
    class_shares,
    feature_statistics,
    fid_standard_error,
    frechet_distance,
    manifold_metrics,
    standardise,
)
from aigc.params import spec
from aigc.text_features import TextFeatures
from aigc.text_metrics import (
    bits_per_character,
    copy_span_share,
    distinct_n,
    self_bleu,
    verbatim_share,
)
from aigc.text_sets import Vocabulary

__all__ = ["TextEvaluateParams", "check_counts", "score_texts", "label_chance",
           "unigram_bits_per_character", "frechet_distance"]  # fmt: skip


@dataclass(frozen=True)
class TextEvaluateParams:
    """params.yaml `text_evaluate`: how the text ruler measures. (`Yardstick.of` and
    `class_metrics` read its precision_k, density_k, inception_splits and class_threshold.)"""

    batch_size: int = spec(ge=1, doc="texts per evaluator forward pass")
    fid_bootstrap_rounds: int = spec(ge=2, doc="resamples of the samples behind the FD's SE")
    precision_k: int = spec(ge=1, doc="k of precision/recall")
    density_k: int = spec(ge=1, doc="k of density/coverage")
    inception_splits: int = spec(ge=1, doc="splits of the Inception-style score")
    class_threshold: float = spec(gt=0.0, le=1.0, doc="share of the real share that covers a class")
    copy_span: int = spec(ge=1, doc="characters of a run shared with a training text: a copy")
    self_bleu_limit: int = spec(ge=2, doc="samples scored by self-BLEU")
    seed: int = spec(ge=0, doc="seed of bootstrap resamples, self-BLEU subset, like-for-like rows")


def check_counts(samples: int, reference: int, params: TextEvaluateParams) -> None:
    """ValueError, before any feature is computed, when a set is too small for the k-NN metrics."""
    if samples <= params.precision_k:
        raise ValueError(f"{samples} samples: the k-NN metrics need more than "
                         f"text_evaluate.precision_k = {params.precision_k}")  # fmt: skip
    needed = max(params.precision_k, params.density_k)
    if reference <= needed:
        raise ValueError(f"{reference} reference texts: the k-NN metrics need more than {needed}")


def distribution_metrics(
    embeddings: np.ndarray, yardstick: Yardstick, params: TextEvaluateParams, suffix: str = ""
) -> dict:
    """Fréchet distance (± bootstrap SE) and precision/recall/density/coverage of sample
    embeddings (N, D) against the reference, keys ending in `suffix`."""
    standardised = standardise(embeddings, yardstick.mean, yardstick.scale)
    statistics = yardstick.statistics
    result = {
        f"frechet_distance{suffix}": frechet_distance(
            *feature_statistics(standardised), *statistics
        ),
        f"frechet_distance_se{suffix}": fid_standard_error(
            standardised, *statistics, params.fid_bootstrap_rounds, params.seed
        ),
    }
    found = manifold_metrics(
        yardstick.embeddings, embeddings, params.precision_k, params.density_k, yardstick.radii
    )
    for key in ("precision", "recall", "density", "coverage"):
        result[f"{key}{suffix}"] = getattr(found, key)
    return result


def label_chance(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The label accuracy of predictions independent of the requested labels, with the same
    shares: Σ_k share of samples asking for k × share predicted as k (Cohen's expected
    agreement, https://doi.org/10.1177/001316446002000104), over the labelled samples."""
    labels = np.asarray(labels)
    chosen = labels >= 0
    asked = np.bincount(labels[chosen], minlength=probabilities.shape[1]) / max(1, chosen.sum())
    return float(asked @ class_shares(probabilities[chosen]))


def score_texts(
    texts: list[str],
    samples: TextFeatures,
    reference: TextFeatures,
    train_texts: list[str],
    params: TextEvaluateParams,
    classes: list[str] | tuple[str, ...] = (),
    sample_labels: np.ndarray | None = None,
    real_n: int | None = None,
) -> dict:
    """Every metric of sample `texts` (their evaluator `samples` features) against the
    `reference` features and the training texts, as one flat dict of numbers and None.

    `sample_labels` (-1 = none; None when they do not name the evaluator's `classes`) give
    `label_accuracy`; `real_n` (default: every sample) is the N of the `*_at_real_n` keys.
    Raises ValueError when the features hold NaN or Inf.
    """
    check_finite(samples=samples, reference=reference)
    count = len(texts)
    result: dict = {"num_samples": count, "reference_samples": len(reference.embeddings)}
    yardstick = Yardstick.of(reference.embeddings, params)
    result.update(distribution_metrics(samples.embeddings, yardstick, params))
    result.update(fid_bootstrap_rounds=params.fid_bootstrap_rounds,
                  precision_k=params.precision_k, density_k=params.density_k)  # fmt: skip

    rows = np.arange(count)
    real_n = count if real_n is None else min(real_n, count)
    if real_n < count:  # drawn without replacement with the fixed seed, as aigc.metrics does
        rows = np.sort(np.random.default_rng(params.seed).choice(count, real_n, replace=False))
    result["real_n"] = real_n
    result.update(distribution_metrics(samples.embeddings[rows], yardstick, params, "_at_real_n"))

    result.update(class_metrics(samples, reference, params, classes, sample_labels))
    result.setdefault("label_samples", 0)
    result["label_chance"] = None
    if result["label_accuracy"] is not None:
        result["label_chance"] = label_chance(samples.probabilities, sample_labels)

    for n in (1, 2, 3):
        result[f"distinct_{n}"] = distinct_n(texts, n)
    result["self_bleu"] = self_bleu(texts, params.self_bleu_limit, params.seed)
    result["self_bleu_samples"] = min(count, params.self_bleu_limit)
    result["verbatim_share"] = verbatim_share(texts, train_texts)
    result["copy_span_share"] = copy_span_share(texts, train_texts, params.copy_span)
    result["copy_span"] = params.copy_span
    result["mean_characters"] = float(np.mean([len(text) for text in texts])) if texts else 0.0
    return result


def unigram_bits_per_character(train_texts: list[str], reference_texts: list[str]) -> float:
    """Held-out bits per character of a unigram character model: the baseline of the real row.

    Fitted on `train_texts` with add-one (Laplace) smoothing over the training characters plus
    `<eos>` and `<unk>` (a character training never shows), each text ending in one `<eos>`;
    scored on `reference_texts`, `<eos>` included, per symbol: -Σ log p / (characters + texts).
    """
    vocabulary = Vocabulary.from_texts(train_texts)
    eos, unknown = vocabulary.index["<eos>"], vocabulary.index["<unk>"]
    symbols = [i for i in range(len(vocabulary.tokens)) if i >= unknown or i == eos]

    def counts(texts: list[str]) -> Counter:
        found = Counter(int(i) for text in texts for i in vocabulary.encode(text))
        found[eos] += len(texts)
        return found

    fitted, scored = counts(train_texts), counts(reference_texts)
    total = sum(fitted.values()) + len(symbols)  # add-one: every symbol counted once more
    nats = -sum(times * math.log((fitted[i] + 1) / total) for i, times in scored.items())
    return bits_per_character(nats, sum(scored.values()))
