"""The ruler: each metric against an independent computation or a known answer, and the whole
ruler responding as it must to noise, blur, missing classes, copies and identical sets.

The response tests use a tiny evaluator trained here on synthetic shape classes (seconds).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.linalg
from conftest import CLASSES, labelled_images, trained_evaluator
from scipy.ndimage import gaussian_filter

from aigc import metrics
from aigc.features import Features, extract_features
from aigc.metrics import (
    EvaluateParams,
    class_kl,
    classes_covered,
    copy_rate,
    copy_threshold,
    feature_statistics,
    fid,
    fid_standard_error,
    frechet_distance,
    inception_score,
    kid,
    manifold_metrics,
    nearest_distances,
    neighbour_radii,
    reconstruction_quality,
    reference_scale,
    score_samples,
    standardise,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PARAMS = EvaluateParams(
    batch_size=256,
    kid_subsets=10,
    kid_subset_size=200,
    fid_bootstrap_rounds=10,
    inception_splits=5,
    precision_k=3,
    density_k=5,
    class_threshold=0.2,
    copy_quantile=0.01,
    reconstruction_samples=50,
    membership_samples=200,
    membership_fpr=0.01,
    device="cpu",
    seed=0,
)


# ---------------------------------------------------------------- FID against references


def test_frechet_distance_matches_the_closed_form_for_diagonal_covariances(rng):
    dimension = 6
    mean_a, mean_b = rng.normal(size=dimension), rng.normal(size=dimension)
    variances_a, variances_b = rng.uniform(0.1, 3, dimension), rng.uniform(0.1, 3, dimension)
    expected = ((mean_a - mean_b) ** 2).sum() + (
        (np.sqrt(variances_a) - np.sqrt(variances_b)) ** 2
    ).sum()
    found = frechet_distance(mean_a, np.diag(variances_a), mean_b, np.diag(variances_b))
    assert found == pytest.approx(expected, rel=1e-10)
    # Commuting (same eigenvectors, rotated) covariances have the same closed form.
    rotation, _ = np.linalg.qr(rng.normal(size=(dimension, dimension)))
    rotated = frechet_distance(
        mean_a,
        rotation @ np.diag(variances_a) @ rotation.T,
        mean_b,
        rotation @ np.diag(variances_b) @ rotation.T,
    )
    assert rotated == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_matches_scipy_sqrtm_on_random_spd_matrices(rng):
    for dimension in (2, 10, 64):
        factors = [rng.normal(size=(dimension, dimension)) for _ in range(2)]
        covariance_a, covariance_b = (
            f @ f.T / dimension + 0.01 * np.eye(dimension) for f in factors
        )
        mean_a, mean_b = rng.normal(size=dimension), rng.normal(size=dimension)
        root = scipy.linalg.sqrtm(covariance_a @ covariance_b).real
        expected = (
            ((mean_a - mean_b) ** 2).sum()
            + np.trace(covariance_a)
            + np.trace(covariance_b)
            - 2 * np.trace(root)
        )
        found = frechet_distance(mean_a, covariance_a, mean_b, covariance_b)
        assert found == pytest.approx(expected, rel=1e-7, abs=1e-9)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift(rng):
    features = rng.normal(size=(500, 8))
    assert fid(features, features) == pytest.approx(0.0, abs=1e-8)
    assert fid(features, features + 1.0) == pytest.approx(8.0, rel=1e-8)  # ‖μ shift‖² = 8


# ---------------------------------------------------------------- KID, IS, classes


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_for_two(rng):
    # Averaged over 8 pairs of sets from one distribution, KID sits within a few standard errors
    # of 0; one set's value can be a few SE off on its own (the SE leaves out the second set).
    pairs = [(rng.normal(size=(600, 16)), rng.normal(size=(600, 16))) for _ in range(8)]
    same = [kid(a, b, subsets=10, subset_size=300, seed=seed) for seed, (a, b) in enumerate(pairs)]
    assert all(found.subset_size == 300 for found in same)
    average = np.mean([found.mean for found in same])
    error_of_average = np.sqrt(np.sum([found.standard_error**2 for found in same])) / len(same)
    assert abs(average) < 4 * error_of_average
    different = kid(pairs[0][0], rng.normal(loc=0.3, size=(600, 16)), 10, 300)
    assert different.mean > 10 * different.standard_error and different.mean > 20 * abs(average)
    # The biased estimate (diagonal included) would sit clearly above zero for one distribution.
    same_a, same_b = pairs[0]
    assert (
        abs(metrics.unbiased_mmd2(same_a[:100], same_b[:100]))
        < metrics.polynomial_kernel(same_a[:1], same_a[:1])[0, 0] / 100
    )


def test_unbiased_mmd_matches_a_direct_double_sum(rng):
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    within_x = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    within_y = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    between = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert metrics.unbiased_mmd2(x, y) == pytest.approx(within_x + within_y - 2 * between)


def test_inception_score_is_one_for_uninformative_and_k_for_confident_balanced_predictions():
    uniform = np.full((100, 5), 0.2)
    assert inception_score(uniform, splits=4)[0] == pytest.approx(1.0)
    confident = np.eye(5)[np.arange(100) % 5]
    mean, std = inception_score(confident, splits=4)
    assert mean == pytest.approx(5.0, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)


def test_class_coverage_and_kl_for_a_collapse_to_two_of_ten_classes():
    real = np.full(10, 0.1)
    collapsed = np.array([0.5, 0.49, 0.01, 0, 0, 0, 0, 0, 0, 0])  # 1 % stray: under 0.2 × 10 %
    assert classes_covered(collapsed, real, threshold=0.2) == 2
    assert classes_covered(real, real, threshold=0.2) == 10
    assert class_kl(np.array([0.5, 0.5] + [0] * 8), real) == pytest.approx(np.log(5))
    assert class_kl(real, real) == pytest.approx(0.0)


# ---------------------------------------------------------------- uncertainty


def gaussian_features(rng, count: int, mixing: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """Correlated Gaussian features (count, D): standard normals times `mixing`, plus `shift`."""
    return rng.normal(size=(count, len(mixing))) @ mixing + shift


def test_fid_standard_error_matches_the_spread_of_fid_over_fresh_sample_sets(rng):
    # The bootstrap SE estimates the std of FID over independent draws of N samples (reference
    # fixed): close for sets that differ, on the safe side (larger) for one distribution, where
    # FID's distribution is skewed. Resampling without replacement would give 0; resampling the
    # reference too, or the wrong N, a wrong spread.
    mixing = rng.normal(size=(8, 8)) / np.sqrt(8)
    reference = feature_statistics(gaussian_features(rng, 3000, mixing))
    for shift, low, high in ((0.0, 0.9, 2.0), (0.15, 0.75, 1.3), (0.4, 0.75, 1.3)):
        draws = [gaussian_features(rng, 400, mixing, shift) for _ in range(60)]
        spread = np.std([frechet_distance(*feature_statistics(d), *reference) for d in draws])
        errors = [fid_standard_error(d, *reference, 20, seed) for seed, d in enumerate(draws[:15])]
        assert low < np.mean(errors) / spread < high, (shift, np.mean(errors), spread)


def test_kid_standard_error_matches_the_spread_of_kid_over_fresh_sample_sets(rng):
    # From one distribution to distant ones. The subsets' std over √subsets alone reads ~0.6 of
    # the spread for the distant pair (the subsets overlap); the first-order term without its
    # noise correction reads ~1.7 times it for the identical pair.
    mixing = rng.normal(size=(8, 8)) / np.sqrt(8)
    reference = gaussian_features(rng, 1000, mixing)
    for shift in (0.0, 0.4):
        fresh = [
            kid(gaussian_features(rng, 1000, mixing, shift), reference, 10, 200, seed)
            for seed in range(30)
        ]
        spread = np.std([found.mean for found in fresh], ddof=1)
        ratio = np.mean([found.standard_error for found in fresh]) / spread
        assert 0.75 < ratio < 1.3, (shift, ratio)
    assert kid(reference, reference, 1, 400).standard_error is None


# ---------------------------------------------------------------- scale, bad input, like for like


def features(embeddings: np.ndarray, classes: int = 0, seed: int = 0) -> Features:
    """Features with random class probabilities (or none) for synthetic embeddings."""
    if not classes:
        return Features(embeddings.astype(np.float32), None)
    logits = np.random.default_rng(seed).normal(size=(len(embeddings), classes))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Features(embeddings.astype(np.float32), probabilities.astype(np.float32))


def synthetic_sets(rng, samples: int = 1500, heldout: int = 400, shift: float = 0.0) -> dict:
    """samples, reference, heldout and train Features drawn from one correlated Gaussian."""
    mixing = rng.normal(size=(12, 12)) / np.sqrt(12) * np.linspace(0.2, 5, 12)  # uneven scales
    draw = lambda count, offset=0.0: features(gaussian_features(rng, count, mixing, offset))  # noqa: E731
    return {
        "samples": draw(samples, shift),
        "reference": draw(1500),
        "heldout": draw(heldout),
        "train": draw(1500),
    }


def test_fid_and_kid_are_measured_in_the_reference_standardised_space(rng):
    sets = synthetic_sets(rng, shift=0.3)
    scored = score_samples(**sets, params=PARAMS)
    mean, scale = reference_scale(sets["reference"].embeddings)
    standard = {name: standardise(found.embeddings, mean, scale) for name, found in sets.items()}
    assert np.allclose(np.cov(standard["reference"], rowvar=False).diagonal(), 1.0)
    assert scored["fid"] == pytest.approx(fid(standard["samples"], standard["reference"]))
    raw_fid = fid(sets["samples"].embeddings, sets["reference"].embeddings)
    assert abs(scored["fid"] - raw_fid) > 0.1 * raw_fid  # the raw space would differ

    # An evaluator that stretches and shifts its dimensions gives the same FID and KID; the
    # k-NN metrics see the raw space, where only a common scale cancels.
    stretch = rng.uniform(0.1, 10, 12)
    stretched = {name: features(found.embeddings * stretch + 3.0) for name, found in sets.items()}
    moved = score_samples(**stretched, params=PARAMS)
    for key in ("fid", "fid_se", "kid_mean", "kid_se", "fid_at_real_n"):
        assert moved[key] == pytest.approx(scored[key], rel=1e-5), key
    assert moved["coverage"] != scored["coverage"]
    scaled = {name: features(found.embeddings * 7.0) for name, found in sets.items()}
    assert score_samples(**scaled, params=PARAMS)["coverage"] == scored["coverage"]


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_features_are_refused_naming_the_set_and_the_rows(rng, bad_value):
    sets = synthetic_sets(rng)
    sets["samples"].embeddings[[3, 9], 0] = bad_value
    with pytest.raises(ValueError, match=r"^samples features: 2 of 1500 rows .*row 3\)"):
        score_samples(**sets, params=PARAMS)
    sets = synthetic_sets(rng)
    sets["heldout"] = features(sets["heldout"].embeddings, classes=3)
    sets["heldout"].probabilities[7, 1] = bad_value
    with pytest.raises(ValueError, match="heldout features: 1 of 400 rows hold NaN or Inf"):
        score_samples(**sets, params=PARAMS)


def test_a_perfect_model_at_the_real_rows_n_matches_the_real_row(rng):
    # Samples from the real distribution, as many as a model draws, against the real row (the
    # held-out set, fewer): the headline FID is smaller only because N is larger, and coverage
    # and recall larger; at the real row's N the numbers agree within their noise.
    sets = synthetic_sets(rng, samples=4000, heldout=500)
    model = score_samples(**sets, params=PARAMS)
    real = score_samples(sets["heldout"], *(sets[k] for k in ("reference", "heldout", "train")),
                         params=PARAMS)  # fmt: skip
    assert model["real_n"] == real["real_n"] == real["samples"] == 500
    for key in ("fid", "fid_se", "precision", "recall", "density", "coverage"):
        assert real[f"{key}_at_real_n"] == real[key], key  # the real row is its own N
    assert real["fid"] > model["fid"] + 5 * model["fid_se"]  # all N: not comparable
    assert model["fid_at_real_n"] == pytest.approx(real["fid"], abs=3 * real["fid_se"])
    assert model["coverage"] - real["coverage"] > 0.03
    assert model["coverage_at_real_n"] == pytest.approx(real["coverage"], abs=0.03)
    assert model["recall_at_real_n"] == pytest.approx(real["recall"], abs=0.05)


# ---------------------------------------------------------------- nearest neighbours


def test_nearest_neighbours_match_brute_force_and_chunking_changes_nothing(rng, monkeypatch):
    a, b = rng.normal(size=(300, 5)), rng.normal(size=(200, 5))
    brute = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    np.testing.assert_allclose(nearest_distances(a, b), brute.min(1), rtol=1e-4)
    within = np.sort(np.sqrt(((a[:, None] - a[None]) ** 2).sum(-1)), axis=1)
    np.testing.assert_allclose(neighbour_radii(a, (3,))[3], within[:, 3], rtol=1e-4)

    whole = manifold_metrics(a, b, 3, 5)
    monkeypatch.setattr(metrics, "CHUNK_BYTES", 4 * 200 * 7)  # 7 rows per chunk
    assert manifold_metrics(a, b, 3, 5) == whole
    np.testing.assert_allclose(nearest_distances(a, b), brute.min(1), rtol=1e-4)


def test_reconstruction_quality_uses_the_unit_data_range(rng):
    originals = rng.uniform(0, 1, size=(4, 3, 16, 16))
    ssim, psnr = reconstruction_quality(originals, originals)
    assert ssim == pytest.approx(1.0) and psnr == metrics.PSNR_CAP
    noisy = np.clip(originals + rng.normal(0, 0.05, originals.shape), 0, 1)
    ssim, psnr = reconstruction_quality(originals, noisy)
    mse = ((originals - noisy) ** 2).reshape(4, -1).mean(axis=1)
    assert psnr == pytest.approx(np.mean(10 * np.log10(1.0 / mse)))
    assert 0.5 < ssim < 1.0


# ---------------------------------------------------------------- the ruler responds


@pytest.fixture(scope="module")
def ruler():
    """A tiny evaluator and the features of real sets: train, held-out, reference."""
    train, model, _ = trained_evaluator()
    train_images = train.images
    features = lambda images: extract_features(model, images, 256)  # noqa: E731
    heldout, _ = labelled_images(800, seed=12)
    reference, _ = labelled_images(800, seed=13)
    return {
        "features": features,
        "train_images": train_images,
        "train": features(train_images),
        "heldout_images": heldout,
        "heldout": features(heldout),
        "reference": features(reference),
    }


def score(ruler, images, labels=None):
    return score_samples(
        ruler["features"](images),
        ruler["reference"],
        ruler["heldout"],
        ruler["train"],
        PARAMS,
        CLASSES,
        labels,
    )


def noisy(images, std, seed=0):
    noise = np.random.default_rng(seed).normal(0, std, images.shape)
    return np.clip(images + noise, 0, 255).astype(np.uint8)


def blurred(images, sigma):
    if sigma == 0:
        return images
    return np.clip(gaussian_filter(images.astype(np.float32), (0, 0, sigma, sigma)), 0, 255).astype(
        np.uint8
    )


def test_fid_grows_strictly_with_noise_and_with_blur(ruler):
    images = ruler["heldout_images"]
    reference = ruler["reference"].embeddings
    embed = lambda x: ruler["features"](x).embeddings  # noqa: E731
    by_noise = [fid(embed(noisy(images, std)), reference) for std in (0, 15, 35, 70, 120)]
    by_blur = [fid(embed(blurred(images, sigma)), reference) for sigma in (0, 0.4, 0.8, 1.2, 1.8)]
    assert all(a < b for a, b in zip(by_noise, by_noise[1:], strict=False)), by_noise
    assert all(a < b for a, b in zip(by_blur, by_blur[1:], strict=False)), by_blur


def test_two_halves_of_the_real_set_have_density_one_and_coverage_near_one_minus_two_to_minus_k(
    ruler,
):
    images, labels = labelled_images(1600, seed=20)
    half_a, half_b = ruler["features"](images[:800]), ruler["features"](images[800:])
    same = manifold_metrics(half_a.embeddings, half_b.embeddings, precision_k=3, density_k=5)
    assert same.density == pytest.approx(1.0, abs=0.15)
    assert same.coverage == pytest.approx(1 - 2**-5, abs=0.035)
    degraded = manifold_metrics(
        half_a.embeddings, ruler["features"](noisy(images[800:], 70)).embeddings, 3, 5
    )
    assert same.precision > degraded.precision and same.recall > degraded.recall
    assert same.precision > 0.6 and same.recall > 0.6


def test_only_two_classes_cover_two_classes_with_low_recall(ruler):
    images, labels = labelled_images(800, seed=30, classes=[0, 2])
    two = score(ruler, images, labels)
    full = score(ruler, *labelled_images(800, seed=31))
    assert two["classes_covered"] == 2 and full["classes_covered"] == len(CLASSES)
    assert two["recall"] < 0.6 < full["recall"]
    assert two["class_kl"] > 0.5 > full["class_kl"]
    assert two["label_accuracy"] > 0.9
    assert two["inception_score_mean"] < full["inception_score_mean"]


def test_copies_of_training_images_have_a_copy_rate_near_one(ruler):
    copies = ruler["train_images"][:500]
    threshold = copy_threshold(ruler["heldout"].embeddings, ruler["train"].embeddings, 0.01)
    assert (
        copy_rate(ruler["features"](copies).embeddings, ruler["train"].embeddings, threshold) > 0.95
    )
    fresh = score(ruler, labelled_images(500, seed=40)[0])
    assert fresh["copy_rate"] < 0.1


def test_score_samples_gives_every_metric_with_its_sample_count(ruler):
    images, labels = labelled_images(300, seed=50)
    result = score(ruler, images, labels)
    for key in (
        "fid",
        "kid_mean",
        "kid_std",
        "kid_se",
        "fid_se",
        "fid_at_real_n",
        "fid_se_at_real_n",
        "coverage_at_real_n",
        "precision",
        "recall",
        "density",
        "coverage",
        "copy_rate",
        "inception_score_mean",
        "classes_covered",
        "class_kl",
    ):
        assert result[key] is not None and np.isfinite(result[key]), key
    assert result["fid_samples"] == result["manifold_samples"] == result["copy_samples"] == 300
    assert result["real_n"] == 300 and result["heldout_samples"] == 800  # all 300 are used
    assert result["fid_bootstrap_rounds"] == PARAMS.fid_bootstrap_rounds and result["fid_se"] > 0
    assert result["kid_subset_size"] == 200 and result["train_samples"] == 2000
    assert sum(result[metrics.class_key(i, c)] for i, c in enumerate(CLASSES)) == pytest.approx(1)


def test_without_class_probabilities_class_metrics_are_null(ruler):
    strip = lambda f: dataclasses.replace(f, probabilities=None)  # noqa: E731
    samples = strip(ruler["features"](labelled_images(200, seed=60)[0]))
    result = score_samples(
        samples, strip(ruler["reference"]), strip(ruler["heldout"]), strip(ruler["train"]), PARAMS
    )
    for key in ("inception_score_mean", "classes_covered", "class_kl", "label_accuracy"):
        assert result[key] is None
    assert not any(key.startswith("class_share_") for key in result)
    assert result["fid"] > 0
