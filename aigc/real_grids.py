"""Real images to set beside a sample grid: for each sample, a held-out real image of the class
the evaluator sees in it, so a reader compares like with like (the evaluate stage writes them as
reports/real_grids/MODEL.png; the report shows the two grids side by side).
"""

from __future__ import annotations

import numpy as np

from aigc.features import Features
from aigc.imagesets import ImageSet


def evaluator_classes(found: Features) -> np.ndarray:
    """Each item's most probable evaluator class, int64 (N,); all -1 without class
    probabilities (an autoencoder evaluator)."""
    if found.probabilities is None:
        return np.full(len(found.embeddings), -1, dtype=np.int64)
    return np.asarray(found.probabilities).argmax(axis=1).astype(np.int64)


def real_counterparts(wanted: np.ndarray, real_classes: np.ndarray) -> np.ndarray:
    """For each class in `wanted` (N,), the index of a real item of that class, -1 where the
    real set has none: int64 (N,).

    Deterministic and distinct: the k-th entry that wants class c gets the k-th item of class
    c in the real set's order. Only where more entries want c than the real set holds does the
    choice wrap around and repeat.
    """
    wanted, real_classes = np.asarray(wanted), np.asarray(real_classes)
    chosen = np.full(len(wanted), -1, dtype=np.int64)
    for label in np.unique(wanted):
        places = np.flatnonzero(wanted == label)
        pool = np.flatnonzero(real_classes == label)
        if len(pool):
            chosen[places] = pool[np.arange(len(places)) % len(pool)]
    return chosen


def real_grid_images(
    samples: Features,
    reference: ImageSet,
    reference_features: Features,
    classes: list[str],
    count: int,
) -> np.ndarray:
    """Real images to set beside a grid of the first `count` samples: uint8 (n, C, H, W),
    n = min(count, samples); image i is a reference image of the class the evaluator assigns
    to sample i (`real_counterparts`), a white tile where the reference set has none.

    The sample's class is the evaluator's, not the label a conditional model was asked for:
    it is the one choice that serves unconditional and conditional models alike, and it is
    the class the ruler counts (class histogram, classes covered, class KL), so the pair shows
    what those numbers are built on, including a sample the evaluator misreads. Whether a
    conditional model follows its labels is measured apart (`label_accuracy`). A reference
    image's class is its own label where the reference set's classes are the evaluator's
    (the pipeline's test split), else the evaluator's class of it; an evaluator without
    classes gives every item -1, so the grid is then the first n reference images.
    """
    wanted = evaluator_classes(samples)[:count]
    if reference.labelled and list(reference.classes) == list(classes):
        real_classes = reference.labels
    else:
        real_classes = evaluator_classes(reference_features)
    chosen = real_counterparts(wanted, real_classes)
    images = np.full((len(chosen), *reference.images.shape[1:]), 255, dtype=np.uint8)
    found = chosen >= 0
    images[found] = reference.images[chosen[found]]
    return images
