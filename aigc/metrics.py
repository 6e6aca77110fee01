"""The ruler: every quality number the pipeline reports, computed on evaluator features.

Each metric is a function of plain arrays: `features` are (N, D) embeddings from
`aigc.features`, `probabilities` (N, K) the evaluator's class probabilities. Sums that decide a
score (means, covariances, kernels) run in float64; nearest-neighbour searches run with
`torch.cdist` over chunks of rows (float32: distances only get compared), so memory stays
bounded whatever the set sizes. `score_samples` puts them together into the flat dict that
becomes `metrics/NAME.json`, each metric beside the sample count it used. It refuses features
holding NaN or Inf before computing anything (one NaN row would silently give coverage 0).

Which feature space each metric sees:

- FID and KID use the embedding *standardised by the reference set*: every dimension minus the
  reference set's mean, divided by its std. Both are sums over dimensions, so an evaluator that
  happens to spread one dimension ten times wider would otherwise weigh it a hundred times more
  (FID) and put KID's cubic kernel far from its intended scale (x·y/d ≈ 1); standardised, they
  keep one scale across evaluator retrainings, and KID lands near 0..1 instead of thousands.
- Precision/recall, density/coverage and the copy rate stay on the raw embedding: they compare
  distances with distances inside one space, so a common scale cancels out, and per-dimension
  scaling would stretch the low-variance (mostly noise) directions in which neighbours are found.

Uncertainty, as standard errors beside the values (keys `fid_se`, `kid_se`):

- `fid_se`: a bootstrap over the samples (`fid_standard_error`), with the reference set fixed;
- `kid_se`: the subsets' noise plus the first-order variance of the full-set estimate (`kid`).

Like for like: FID's bias and the k-NN metrics depend on the number of samples N (FID's bias
shrinks like 1/N; recall and coverage grow with N as more sample balls cover real ones). The real
row can only hold the held-out split (N = len(heldout)), while a model draws as many samples as
it likes; so every row is also scored on exactly that N (`real_n`), its samples drawn without
replacement with the fixed seed, against the same reference set: the `*_at_real_n` keys are the
numbers to set beside the real row's (for the real row they equal its headline keys). The
headline keys keep every sample, the most precise estimate of a model. KID is not repeated: it
is unbiased and averaged over subsets of one fixed size, so its expectation does not depend on
N; the copy rate and class shares are proportions, unbiased at any N.

- FID: Heusel et al. 2017, https://arxiv.org/abs/1706.08500
- KID: Bińkowski et al. 2018, https://arxiv.org/abs/1801.01401
- Inception score: Salimans et al. 2016, https://arxiv.org/abs/1606.03498
- Precision/recall: Kynkäänniemi et al. 2019, https://arxiv.org/abs/1904.06991
- Density/coverage: Naeem et al. 2020, https://arxiv.org/abs/2002.09797
- Bootstrap: Efron 1979, https://doi.org/10.1214/aos/1176344552
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from aigc.params import spec

CHUNK_BYTES = 1 << 27  # 128 MiB of float32 distances per chunk of a distance matrix
PSNR_CAP = 100.0  # dB; identical images give an infinite PSNR, which JSON cannot hold


@dataclass(frozen=True)
class EvaluateParams:
    """params.yaml `evaluate`: how the ruler measures."""

    batch_size: int = spec(ge=1, doc="images per evaluator forward pass")
    kid_subsets: int = spec(ge=1, doc="KID subsets")
    kid_subset_size: int = spec(ge=2, doc="images per KID subset")
    fid_bootstrap_rounds: int = spec(ge=2, doc="resamples of the samples behind fid_se")
    inception_splits: int = spec(ge=1, doc="splits of the Inception-style score")
    precision_k: int = spec(ge=1, doc="k of precision/recall")
    density_k: int = spec(ge=1, doc="k of density/coverage")
    class_threshold: float = spec(gt=0.0, le=1.0, doc="share of the real share that covers a class")
    copy_quantile: float = spec(ge=0.0, le=1.0, doc="held-out NN-distance quantile of a copy")
    reconstruction_samples: int = spec(ge=1, doc="test images reconstructed for SSIM/PSNR")
    membership_samples: int = spec(ge=2, doc="members and non-members each of the audit")
    membership_fpr: float = spec(gt=0.0, lt=1.0, doc="false-positive rate of the audit's TPR")
    device: str = spec(choices=("auto", "cpu", "cuda"), doc="where the evaluator runs")
    seed: int = spec(ge=0, doc="seed of KID subsets, bootstrap resamples, like-for-like rows")


# ---------------------------------------------------------------- Fréchet distance (FID)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of `features` (N, D), in float64."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(
    mean_a: np.ndarray, covariance_a: np.ndarray, mean_b: np.ndarray, covariance_b: np.ndarray
) -> float:
    """Fréchet distance of two Gaussians (Heusel et al. 2017, eq. 6).

    d² = ‖μa − μb‖² + tr(Σa) + tr(Σb) − 2 tr((Σa Σb)^½). The trace of the square root is the
    sum of the square roots of the eigenvalues of Σa Σb, which are real and non-negative for
    PSD matrices (Σa Σb is similar to Σa^½ Σb Σa^½); rounding can leave tiny negative or
    imaginary parts, so the real parts are clipped at 0 before the square root.
    """
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    covariance_a = np.atleast_2d(np.asarray(covariance_a, np.float64))
    covariance_b = np.atleast_2d(np.asarray(covariance_b, np.float64))
    eigenvalues = np.linalg.eigvals(covariance_a @ covariance_b)
    trace_sqrt = np.sqrt(np.clip(eigenvalues.real, 0.0, None)).sum()
    difference = mean_a - mean_b
    distance = (
        difference @ difference + np.trace(covariance_a) + np.trace(covariance_b) - 2.0 * trace_sqrt
    )
    return float(max(distance, 0.0))


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature sets (N, D) and (M, D)."""
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def fid_standard_error(
    samples: np.ndarray,
    reference_mean: np.ndarray,
    reference_covariance: np.ndarray,
    rounds: int,
    seed: int = 0,
) -> float:
    """Bootstrap standard error of the FID of `samples` (N, D) to fixed reference statistics.

    Draws N rows of `samples` with replacement `rounds` times and returns the std (ddof 1) of
    their FIDs to the reference Gaussian (Efron 1979: the spread of the statistic over resamples
    of the data estimates its spread over fresh draws of the data). It measures how far FID
    would move with another set of N samples from the same model. The reference set is held
    fixed: its own sampling noise is the same for every row of a table, so it does not change
    which row is better. On synthetic Gaussians it came within 0.98-1.11 of the spread over
    fresh sample sets when the sets differ clearly, and up to 1.5 times that spread for sets
    from one distribution (the real row), where FID's distribution is skewed: on the safe side.
    A few tens of rounds give the SE to within ~15-25 % (its relative error is about
    1/√(2·rounds)); each round costs one (D, D) covariance and eigendecomposition.
    """
    samples = np.asarray(samples, dtype=np.float64)
    generator = np.random.default_rng(seed)
    distances = []
    for _ in range(rounds):
        resample = samples[generator.integers(0, len(samples), len(samples))]
        distances.append(
            frechet_distance(*feature_statistics(resample), reference_mean, reference_covariance)
        )
    return float(np.std(distances, ddof=1))


def reference_scale(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean (D,) and std (D,, ddof 1) of the reference features, in float64.

    A dimension the reference set holds constant gets scale 1 (it is then only centred), so
    standardising never divides by zero.
    """
    reference = np.asarray(reference, dtype=np.float64)
    std = reference.std(axis=0, ddof=1) if len(reference) > 1 else np.zeros(reference.shape[1])
    return reference.mean(axis=0), np.where(std > 0, std, 1.0)


def standardise(features: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(features − mean) / scale per dimension, float64 (N, D): the space of FID and KID."""
    return (np.asarray(features, dtype=np.float64) - mean) / scale


# ---------------------------------------------------------------- KID


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x·y / d + 1)³, the cubic kernel of Bińkowski et al. 2018 (section 3)."""
    base = x @ y.T / x.shape[1] + 1.0
    return base * base * base  # a third of the time of `** 3`


def mmd2_terms(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Unbiased MMD² between x (m, D) and y (n, D), and the variance of its first-order term.

    MMD²_u = mean_{i≠j} k(xᵢ, xⱼ) + mean_{i≠j} k(yᵢ, yⱼ) − 2 mean_{i,j} k(xᵢ, yⱼ) (Gretton et
    al. 2012, eq. 3). The within-set means leave out the diagonal (k(x, x) terms), which is what
    makes it unbiased: its expectation is 0 when x and y come from one distribution, so it can
    be negative.

    As a function of the x set alone, MMD²_u = const + (2/m) Σᵢ g(xᵢ) + smaller terms, with
    g(x) = E k(x, x') − E k(x, y) (Hoeffding's decomposition, Hoeffding 1948,
    https://doi.org/10.1214/aoms/1177730196; for MMD, Sutherland et al. 2017, eq. 2,
    https://arxiv.org/abs/1611.04488), so its variance over fresh x sets of size N is about
    4 var(g) / N. The second value returned is var(g), estimated as the variance over i of
    ĝᵢ = mean_{j≠i} k(xᵢ, xⱼ) − mean_j k(xᵢ, yⱼ) less the mean noise of those row means
    (var_j k(xᵢ, xⱼ) / (m − 1) + var_j k(xᵢ, yⱼ) / n), clipped at 0; without that correction it
    overstates var(g) when x and y are close (1.7-fold for one distribution, in simulation).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, n = len(x), len(y)
    kernel_xx, kernel_yy = polynomial_kernel(x, x), polynomial_kernel(y, y)
    kernel_xy = polynomial_kernel(x, y)
    diagonal = kernel_xx.diagonal()
    within_x = (kernel_xx.sum(axis=1) - diagonal) / (m - 1)  # (m,): mean_{j≠i} k(xᵢ, xⱼ)
    within_y = (kernel_yy.sum() - np.trace(kernel_yy)) / (n * (n - 1))
    between = kernel_xy.mean(axis=1)  # (m,): mean_j k(xᵢ, yⱼ)
    estimate = float(within_x.mean() + within_y - 2.0 * between.mean())
    if m < 3 or n < 2:
        return estimate, 0.0
    squares_x = (kernel_xx * kernel_xx).sum(axis=1) - diagonal * diagonal
    spread_x = (squares_x - (m - 1) * within_x * within_x) / (m - 2)  # var_{j≠i}, ddof 1
    noise = spread_x / (m - 1) + kernel_xy.var(axis=1, ddof=1) / n  # (m,)
    first_order = np.var(within_x - between, ddof=1) - noise.mean()
    return estimate, float(max(first_order, 0.0))


def unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² estimate between samples x (m, D) and y (n, D) (see `mmd2_terms`)."""
    return mmd2_terms(x, y)[0]


@dataclass(frozen=True)
class KernelDistance:
    """KID over subsets: their mean, std (ddof 0), its standard error, the subset size."""

    mean: float
    std: float
    standard_error: float | None  # None with a single subset
    subset_size: int


def kid(
    features_a: np.ndarray, features_b: np.ndarray, subsets: int, subset_size: int, seed: int = 0
) -> KernelDistance:
    """KID of `features_a` (the samples) to `features_b` (the reference), with its SE.

    The unbiased MMD² averaged over random subsets (Bińkowski et al. 2018, section 3): each
    subset draws `subset_size` items (fewer when a set is smaller) without replacement from each
    set; subsets bound the cost of the kernel sums.

    The standard error is that of the mean over fresh sets of N samples (the reference fixed),
    from two independent parts: var(mean) = var_subsets / subsets + 4 var(g) / N. The first is
    the subset draws' own noise (their variance, ddof 1, over their count); the second is the
    first-order (Hoeffding) variance of the full-set estimate that the subset mean estimates
    (`mmd2_terms`; var(g) averaged over the subsets). On synthetic Gaussians it came within
    0.9-1.1 of the spread over fresh sample sets, from one distribution to distant ones. The
    subsets' std over √subsets alone is not enough: the subsets overlap (50 of 1 000 from
    10 000), so it read 0.5-0.9 of that spread, least for the most distant sets.
    """
    generator = np.random.default_rng(seed)
    size = min(subset_size, len(features_a), len(features_b))
    if size < 2:
        raise ValueError(f"KID needs at least 2 items per set, got {size}")
    estimates, first_order_variances = [], []
    for _ in range(subsets):
        estimate, first_order = mmd2_terms(
            features_a[np.sort(generator.choice(len(features_a), size, replace=False))],
            features_b[np.sort(generator.choice(len(features_b), size, replace=False))],
        )
        estimates.append(estimate)
        first_order_variances.append(first_order)
    standard_error = None
    if subsets > 1:
        variance = np.var(estimates, ddof=1) / subsets
        variance += 4.0 * np.mean(first_order_variances) / len(features_a)
        standard_error = float(np.sqrt(variance))
    return KernelDistance(float(np.mean(estimates)), float(np.std(estimates)), standard_error, size)


# ---------------------------------------------------------------- Inception-style score


def inception_score(probabilities: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) ‖ p(y))) with the evaluator's p(y|x) (Salimans et al. 2016, section 4).

    Computed on `splits` equal parts, as in the paper's code; returns their mean and std.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    splits = max(1, min(splits, len(probabilities)))
    scores = []
    for part in np.array_split(probabilities, splits):
        marginal = part.mean(axis=0, keepdims=True)  # p(y) over this part, (1, K)
        log_ratio = np.log(np.clip(part, 1e-12, None)) - np.log(np.clip(marginal, 1e-12, None))
        scores.append(np.exp((part * log_ratio).sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


# ---------------------------------------------------------------- nearest neighbours


def _as_tensor(features: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32))


def distance_chunks(rows: np.ndarray, columns: np.ndarray) -> Iterator[tuple[slice, torch.Tensor]]:
    """Euclidean distances rows × columns, yielded as (row slice, (r, M) block) chunks."""
    rows_tensor, columns_tensor = _as_tensor(rows), _as_tensor(columns)
    step = max(1, CHUNK_BYTES // (4 * max(1, len(columns_tensor))))
    for start in range(0, len(rows_tensor), step):
        block = slice(start, min(start + step, len(rows_tensor)))
        yield block, torch.cdist(rows_tensor[block], columns_tensor)


def nearest_distances(queries: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Distance from each query (N, D) to its nearest item of `pool` (M, D): (N,)."""
    nearest = np.empty(len(queries), dtype=np.float64)
    for block, distances in distance_chunks(queries, pool):
        nearest[block] = distances.min(dim=1).values.numpy()
    return nearest


def neighbour_radii(features: np.ndarray, ks: tuple[int, ...]) -> dict[int, np.ndarray]:
    """For each k, the distance from every item to its k-th nearest other item of the set.

    The item itself sits at distance 0 among its neighbours, so the k-th other item is the
    (k + 1)-th smallest distance (as in both papers' reference code).
    """
    if len(features) <= max(ks):
        raise ValueError(f"need more than {max(ks)} items for k-NN radii, got {len(features)}")
    radii = {k: np.empty(len(features), dtype=np.float64) for k in ks}
    for block, distances in distance_chunks(features, features):
        smallest = distances.topk(max(ks) + 1, dim=1, largest=False).values  # (r, max k + 1)
        for k in ks:
            radii[k][block] = smallest[:, k].numpy()
    return radii


@dataclass(frozen=True)
class Manifold:
    """Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020)."""

    precision: float
    recall: float
    density: float
    coverage: float


def manifold_metrics(
    real: np.ndarray,
    fake: np.ndarray,
    precision_k: int = 3,
    density_k: int = 5,
    real_radii: dict[int, np.ndarray] | None = None,
) -> Manifold:
    """The four k-NN metrics from one pass over the real × fake distances.

    `real_radii` (from `neighbour_radii(real, (precision_k, density_k))`) saves recomputing the
    real set's radii when one real set meets several fake sets.

    - precision: share of fake items inside some real item's k-NN ball (Kynkäänniemi, eq. 1-2);
    - recall: share of real items inside some fake item's k-NN ball;
    - density: (1 / kM) Σ_j Σ_i 1[fake j in real ball i] (Naeem, eq. 3), ≈ 1 for one distribution;
    - coverage: share of real items whose k-NN ball holds some fake item (Naeem, eq. 4).

    A ball is closed: a point exactly on its radius is inside (`<=`, as Kynkäänniemi et al.
    write it, eq. 1); the `prdc` package (Naeem et al.'s code) compares with `<`. The two differ
    only on exact ties.
    """
    if real_radii is None:
        real_radii = neighbour_radii(real, (precision_k, density_k))
    fake_radii = torch.as_tensor(neighbour_radii(fake, (precision_k,))[precision_k])
    fake_in_real_ball = torch.zeros(len(fake), dtype=torch.bool)
    density_counts = torch.zeros(len(fake), dtype=torch.float64)
    real_in_fake_ball = np.empty(len(real), dtype=bool)
    real_covered = np.empty(len(real), dtype=bool)
    for block, distances in distance_chunks(real, fake):  # (r, M)
        precision_radii = torch.as_tensor(real_radii[precision_k][block])[:, None]
        density_radii = torch.as_tensor(real_radii[density_k][block])[:, None]
        fake_in_real_ball |= (distances <= precision_radii).any(dim=0)
        density_counts += (distances <= density_radii).sum(dim=0)
        real_in_fake_ball[block] = (distances <= fake_radii[None, :]).any(dim=1).numpy()
        real_covered[block] = (distances.min(dim=1).values <= density_radii[:, 0]).numpy()
    return Manifold(
        precision=float(fake_in_real_ball.double().mean()),
        recall=float(real_in_fake_ball.mean()),
        density=float(density_counts.sum() / (density_k * len(fake))),
        coverage=float(real_covered.mean()),
    )


# ---------------------------------------------------------------- memorisation


def copy_threshold(heldout: np.ndarray, train: np.ndarray, quantile: float) -> float:
    """The `quantile` of held-out real items' distances to their nearest training item."""
    return float(np.quantile(nearest_distances(heldout, train), quantile))


def copy_rate(samples: np.ndarray, train: np.ndarray, threshold: float) -> float:
    """Share of samples closer to their nearest training item than `threshold`.

    Held-out real images fall under the threshold only at the chosen quantile's rate, so a
    rate well above that quantile means the model reproduces training images.
    """
    return float((nearest_distances(samples, train) < threshold).mean())


# ---------------------------------------------------------------- classes


def class_shares(probabilities: np.ndarray) -> np.ndarray:
    """Share of items whose most probable class is each class: (K,), summing to 1."""
    predicted = np.asarray(probabilities).argmax(axis=1)
    counts = np.bincount(predicted, minlength=probabilities.shape[1]).astype(np.float64)
    return counts / max(1, len(predicted))


def classes_covered(sample_shares: np.ndarray, real_shares: np.ndarray, threshold: float) -> int:
    """Classes whose sample share reaches `threshold` × their share among real images.

    A relative threshold treats rare and common classes alike; with 10 balanced classes and
    threshold 0.2, a class needs at least 2 % of the samples.
    """
    present = np.asarray(real_shares) > 0
    return int((np.asarray(sample_shares)[present] >= threshold * real_shares[present]).sum())


def class_kl(sample_shares: np.ndarray, real_shares: np.ndarray) -> float:
    """KL(samples ‖ real) of the class distributions, in nats: 0 when they match.

    This direction stays finite when the samples miss classes (mode collapse to c of K balanced
    classes gives log(K / c)); the real shares get a tiny floor so a class the real images never
    show cannot make it infinite.
    """
    samples = np.asarray(sample_shares, dtype=np.float64)
    real = np.clip(np.asarray(real_shares, dtype=np.float64), 1e-6, None)
    real = real / real.sum()
    present = samples > 0
    return float((samples[present] * np.log(samples[present] / real[present])).sum())


# ---------------------------------------------------------------- reconstructions


def reconstruction_quality(
    originals: np.ndarray, reconstructions: np.ndarray
) -> tuple[float, float]:
    """Mean SSIM and mean PSNR (dB) of reconstructions, images (N, C, H, W) in [0, 1].

    scikit-image per image, with data_range 1 (the images' range, not the dtype's) and the
    channel axis named, so colour images are compared per channel. PSNR is capped at PSNR_CAP.
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    originals = np.asarray(originals, dtype=np.float64)
    reconstructions = np.clip(np.asarray(reconstructions, dtype=np.float64), 0.0, 1.0)
    ssims, psnrs = [], []
    for original, reconstruction in zip(originals, reconstructions, strict=True):
        ssims.append(
            structural_similarity(original, reconstruction, data_range=1.0, channel_axis=0)
        )
        if np.array_equal(original, reconstruction):
            psnrs.append(PSNR_CAP)
        else:
            psnr = peak_signal_noise_ratio(original, reconstruction, data_range=1.0)
            psnrs.append(min(psnr, PSNR_CAP))
    return float(np.mean(ssims)), float(np.mean(psnrs))


# ---------------------------------------------------------------- everything, as one flat dict


def class_key(index: int, name: str) -> str:
    """The flat metrics key of a class's share: class_share_03_dress."""
    slug = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
    return f"class_share_{index:02d}_{slug}"


def check_finite(**feature_sets) -> None:
    """Refuse feature sets holding NaN or Inf, naming the set and its count of bad rows.

    Each keyword is a set's name and its `aigc.features.Features`. Checked before any metric:
    a NaN compares false with everything, so one NaN row would silently give coverage 0.
    """
    for name, found in feature_sets.items():
        arrays = [found.embeddings]
        if found.probabilities is not None:
            arrays.append(found.probabilities)
        bad = np.zeros(len(found.embeddings), dtype=bool)
        for array in arrays:
            bad |= ~np.isfinite(np.asarray(array)).reshape(len(array), -1).all(axis=1)
        if bad.any():
            raise ValueError(
                f"{name} features: {int(bad.sum())} of {len(bad)} rows hold NaN or Inf "
                f"(first: row {int(np.argmax(bad))}); no metric was computed"
            )


@dataclass(frozen=True)
class Yardstick:
    """The reference set as every comparison needs it, computed once per evaluation.

    `embeddings` (M, D) and their k-NN `radii` serve the k-NN metrics (raw space); `mean` and
    `scale` standardise features for FID and KID, `standardised` is the reference set so
    standardised and `statistics` its mean and covariance.
    """

    embeddings: np.ndarray
    radii: dict[int, np.ndarray]
    mean: np.ndarray
    scale: np.ndarray
    standardised: np.ndarray
    statistics: tuple[np.ndarray, np.ndarray]

    @classmethod
    def of(cls, embeddings: np.ndarray, params: EvaluateParams) -> Yardstick:
        mean, scale = reference_scale(embeddings)
        standardised = standardise(embeddings, mean, scale)
        radii = neighbour_radii(embeddings, (params.precision_k, params.density_k))
        return cls(embeddings, radii, mean, scale, standardised, feature_statistics(standardised))


def frechet_metrics(
    standardised: np.ndarray, reference: Yardstick, params: EvaluateParams, suffix: str = ""
) -> dict:
    """`fid` and its bootstrap `fid_se` of standardised samples, keys ending in `suffix`."""
    statistics = reference.statistics
    distance = frechet_distance(*feature_statistics(standardised), *statistics)
    error = fid_standard_error(standardised, *statistics, params.fid_bootstrap_rounds, params.seed)
    return {f"fid{suffix}": distance, f"fid_se{suffix}": error}


def manifold_dict(
    samples: np.ndarray, reference: Yardstick, params: EvaluateParams, suffix: str = ""
) -> dict:
    """Precision, recall, density and coverage (raw embeddings), keys ending in `suffix`."""
    found = manifold_metrics(
        reference.embeddings, samples, params.precision_k, params.density_k, reference.radii
    )
    return {f"{key}{suffix}": value for key, value in dataclasses.asdict(found).items()}


def at_real_n(
    samples: np.ndarray,
    standardised: np.ndarray,
    reference: Yardstick,
    real_n: int,
    params: EvaluateParams,
) -> dict:
    """FID (± SE) and the k-NN metrics on `real_n` of the samples: the like-for-like keys.

    `samples` are the raw embeddings, `standardised` the same rows standardised. The rows are
    drawn without replacement with `params.seed` (all of them, in order, when there are no more
    than `real_n`), the same rows for both feature spaces.
    """
    rows = np.arange(len(samples))
    if len(samples) > real_n:
        rows = np.sort(np.random.default_rng(params.seed).choice(len(samples), real_n, False))
    result = {"real_n": len(rows)}
    result.update(frechet_metrics(standardised[rows], reference, params, "_at_real_n"))
    result.update(manifold_dict(samples[rows], reference, params, "_at_real_n"))
    return result


def class_metrics(
    samples, reference, params: EvaluateParams, classes, sample_labels: np.ndarray | None
) -> dict:
    """Inception-style score, class shares, coverage and KL, label accuracy (None without
    class probabilities)."""
    count = len(samples.embeddings)
    classified = samples.probabilities is not None and reference.probabilities is not None
    result = {"inception_score_mean": None, "inception_score_std": None}
    result.update(classes_covered=None, class_kl=None, label_accuracy=None)
    result["num_classes"] = len(classes) if classified else None
    if not classified:
        return result
    mean, std = inception_score(samples.probabilities, params.inception_splits)
    result.update(inception_score_mean=mean, inception_score_std=std)
    result["inception_score_splits"] = min(params.inception_splits, count)
    sample_shares = class_shares(samples.probabilities)
    real_shares = class_shares(reference.probabilities)
    result["classes_covered"] = classes_covered(sample_shares, real_shares, params.class_threshold)
    result["class_threshold"] = params.class_threshold
    result["class_kl"] = class_kl(sample_shares, real_shares)
    result["class_samples"] = count
    for index, name in enumerate(classes):
        result[class_key(index, name)] = float(sample_shares[index])
    if sample_labels is not None and (np.asarray(sample_labels) >= 0).any():
        labelled = np.asarray(sample_labels) >= 0
        predicted = samples.probabilities[labelled].argmax(axis=1)
        result["label_accuracy"] = float((predicted == sample_labels[labelled]).mean())
        result["label_samples"] = int(labelled.sum())
    return result


def score_samples(
    samples,
    reference,
    heldout,
    train,
    params: EvaluateParams,
    classes: list[str] | tuple[str, ...] = (),
    sample_labels: np.ndarray | None = None,
    timings: dict[str, float] | None = None,
) -> dict:
    """Every distribution metric of `samples` against the real sets, as one flat dict.

    Each argument is an `aigc.features.Features` (embeddings, probabilities or None): samples
    are scored against `reference` (FID, KID, manifold and class metrics), and against `train`
    with `heldout` as the yardstick (copy rate); `heldout`'s size is the real row's N of the
    like-for-like `*_at_real_n` keys (see the module's docstring). `sample_labels` (-1 = none),
    when they name the evaluator's classes, give `label_accuracy`. Every metric carries the
    sample count it used; metrics that need classes are None when the evaluator has none.
    Raises ValueError when any set holds NaN or Inf. `timings` (if given) receives seconds
    per part.
    """
    check_finite(samples=samples, reference=reference, heldout=heldout, train=train)
    timings = {} if timings is None else timings
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    count, reference_count = len(samples.embeddings), len(reference.embeddings)
    result: dict = {"samples": count, "reference_samples": reference_count}
    yardstick = Yardstick.of(reference.embeddings, params)
    lap("reference set: standardisation, k-NN radii")
    standardised = standardise(samples.embeddings, yardstick.mean, yardstick.scale)
    result.update(frechet_metrics(standardised, yardstick, params))
    result.update(fid_samples=count, fid_bootstrap_rounds=params.fid_bootstrap_rounds)
    lap("fid")
    result.update(kernel_metrics(standardised, yardstick, params))
    lap("kid")
    result.update(manifold_dict(samples.embeddings, yardstick, params))
    result.update(precision_k=params.precision_k, density_k=params.density_k)
    result["manifold_samples"] = count
    lap("precision, recall, density, coverage")
    real_n = min(count, len(heldout.embeddings))
    result.update(at_real_n(samples.embeddings, standardised, yardstick, real_n, params))
    lap("fid, precision, recall, density, coverage at the real row's N")
    result.update(copy_metrics(samples.embeddings, heldout.embeddings, train.embeddings, params))
    lap("copy rate")
    result.update(class_metrics(samples, reference, params, classes, sample_labels))
    lap("inception score, classes")
    return result


def kernel_metrics(standardised: np.ndarray, yardstick: Yardstick, params: EvaluateParams) -> dict:
    """KID of standardised sample features to the reference, with its std and SE."""
    kernel = kid(
        standardised, yardstick.standardised, params.kid_subsets, params.kid_subset_size,
        params.seed,
    )  # fmt: skip
    return {
        "kid_mean": kernel.mean,
        "kid_std": kernel.std,
        "kid_se": kernel.standard_error,
        "kid_subset_size": kernel.subset_size,
        "kid_subsets": params.kid_subsets,
    }


def copy_metrics(samples, heldout, train, params: EvaluateParams) -> dict:
    """Copy rate of sample embeddings against the training set, held-out images the yardstick."""
    threshold = copy_threshold(heldout, train, params.copy_quantile)
    return {
        "copy_rate": copy_rate(samples, train, threshold),
        "copy_threshold": threshold,
        "copy_quantile": params.copy_quantile,
        "copy_samples": len(samples),
        "train_samples": len(train),
        "heldout_samples": len(heldout),
    }


@torch.no_grad()
def reconstruction_metrics(
    model, images: np.ndarray, labels: np.ndarray | None, count: int, batch_size: int, device
) -> dict:
    """SSIM/PSNR of `model.reconstruct` on the first `count` uint8 images (N, C, H, W)."""
    images = np.array(images[:count])  # a writable copy, in memory
    conditional = model.conditional and labels is not None
    reconstructions = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device).float() / 255.0
        batch_labels = None
        if conditional:
            batch_labels = torch.from_numpy(np.asarray(labels[start : start + batch_size]))
            batch_labels = batch_labels.to(device)
        reconstructions.append(model.reconstruct(batch, batch_labels).float().cpu().numpy())
    ssim, psnr = reconstruction_quality(images / 255.0, np.concatenate(reconstructions))
    return {
        "reconstruction_ssim": ssim,
        "reconstruction_psnr": psnr,
        "reconstruction_samples": len(images),
    }


def model_metrics(model, reference, params: EvaluateParams, device) -> dict:
    """For families that encode, reconstruction quality on the `reference` image set; None
    without a model. (Training time is not read here: timings live in the uncached logs.)"""
    result = {"reconstruction_ssim": None, "reconstruction_psnr": None}
    if model is not None and model.encodes:
        result.update(
            reconstruction_metrics(
                model,
                reference.images,
                reference.labels,
                params.reconstruction_samples,
                params.batch_size,
                device,
            )
        )
    return result


def format_table(metrics: dict) -> str:
    """A two-column text table of a metrics dict (for the terminal)."""
    width = max(len(key) for key in metrics)
    lines = []
    for key, value in metrics.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        lines.append(f"{key:<{width}}  {'-' if value is None else value}")
    return "\n".join(lines)
