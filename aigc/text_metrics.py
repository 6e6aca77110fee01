"""The text ruler's own measures: diversity, memorisation and bits per character.

What the text branch shares with the image side is not here: the Fréchet distance,
precision/recall and density/coverage and the class metrics are aigc/metrics.py's functions on
feature arrays, fed the text evaluator's features.

- `distinct_n`: distinct word n-grams over all n-grams of the samples (Li et al. 2016); 1 = no
  n-gram repeats, near 0 = the same phrases over and over.
- `self_bleu`: the mean BLEU of each sample against the others as references (Zhu et al. 2018,
  Texygen), by sacrebleu; high = the samples resemble each other.
- `verbatim_share`: share of samples that are, whitespace-folded, a training text.
- `copy_span_share`: share of samples that share a run of at least `span` characters with a
  training text: the text copy rate (a memorised line inside a new frame counts).
- `bits_per_character`: a summed negative log-likelihood in nats as bits per character.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from sacrebleu.metrics import BLEU


def words(text: str) -> list[str]:
    return text.split()


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct word n-grams / all word n-grams over `texts` (0 when there is none)."""
    grams = [tuple(tokens[i : i + n]) for text in texts
             for tokens in [words(text)] for i in range(len(tokens) - n + 1)]  # fmt: skip
    return len(set(grams)) / len(grams) if grams else 0.0


def self_bleu(texts: list[str], limit: int = 200, seed: int = 0) -> float:
    """Mean sentence BLEU (0-100) of each of up to `limit` texts against all the others."""
    if len(texts) < 2:
        return 0.0
    chosen = list(texts)
    if len(chosen) > limit:
        pick = np.random.default_rng(seed).choice(len(chosen), size=limit, replace=False)
        chosen = [chosen[i] for i in sorted(pick)]
    bleu = BLEU(effective_order=True)
    scores = [bleu.sentence_score(text, chosen[:i] + chosen[i + 1 :]).score
              for i, text in enumerate(chosen)]  # fmt: skip
    return float(np.mean(scores))


def fold(text: str) -> str:
    return " ".join(text.split())


def verbatim_share(samples: list[str], train: Iterable[str]) -> float:
    """Share of `samples` that equal a training text, whitespace-folded."""
    known = {fold(text) for text in train}
    return sum(fold(sample) in known for sample in samples) / len(samples) if samples else 0.0


def copy_span_share(samples: list[str], train: Iterable[str], span: int) -> float:
    """Share of `samples` holding a run of `span` characters that also occurs in a training
    text (every training span is indexed, so the check is exact, not sampled)."""
    if not samples:
        return 0.0
    spans = {text[i : i + span] for text in map(fold, train) for i in range(len(text) - span + 1)}
    copied = 0
    for sample in map(fold, samples):
        copied += any(sample[i : i + span] in spans for i in range(len(sample) - span + 1))
    return copied / len(samples)


def bits_per_character(nats: float, characters: int) -> float:
    """A summed negative log-likelihood in nats over `characters`, in bits per character."""
    return nats / math.log(2) / characters if characters else float("nan")
