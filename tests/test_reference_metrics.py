"""Our ruler against independent, well-kept implementations, on the same feature arrays.

Dev-only references (`pip install -e .[dev]`): `torchmetrics` (FID, KID) and `prdc` (Naeem et
al.'s own code for precision/recall/density/coverage). Without them these tests skip. Where a
reference's convention differs from ours, the test says how and maps one onto the other.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aigc.metrics import fid, kid, manifold_metrics, neighbour_radii

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class PassThrough(torch.nn.Module):
    """The feature network torchmetrics calls: our features go through unchanged."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features  # torchmetrics reads it instead of probing the network

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@pytest.fixture
def feature_sets(rng) -> tuple[np.ndarray, np.ndarray]:
    """Correlated 16-d features: a real set (600) and a shifted, wider fake set (500)."""
    mixing = rng.normal(size=(16, 16)) / 4.0
    real = rng.normal(size=(600, 16)) @ mixing
    fake = rng.normal(size=(500, 16)) @ mixing * 1.2 + 0.3
    return real, fake


def test_fid_matches_torchmetrics(feature_sets):
    image_fid = pytest.importorskip("torchmetrics.image.fid")
    real, fake = feature_sets
    reference = image_fid.FrechetInceptionDistance(feature=PassThrough(16))
    reference.update(torch.from_numpy(real), real=True)
    reference.update(torch.from_numpy(fake), real=False)
    # Same formula (float64, trace of the root from the eigenvalues of Σa Σb); torchmetrics
    # forms the covariance as (Σ x xᵀ − n μ μᵀ) / (n − 1), we as np.cov: rounding differs only.
    assert fid(fake, real) == pytest.approx(float(reference.compute()), rel=1e-9)
    assert fid(fake, real) > 1.0  # the sets differ: not a comparison of two zeros


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_matches_torchmetrics_on_whole_sets(feature_sets):
    image_kid = pytest.importorskip("torchmetrics.image.kid")
    real, fake = feature_sets[0][:500], feature_sets[1]
    # One subset as large as both sets is the whole sets in both (torchmetrics permutes them;
    # MMD² does not depend on the order). Its kernel defaults, degree 3, gamma 1/d and coef 1,
    # are our (x·y/d + 1)³. Its MMD² assumes sets of equal size m (it divides the between-sets
    # sum by m²); ours divides by m·n, the same here.
    reference = image_kid.KernelInceptionDistance(
        feature=PassThrough(16), subsets=1, subset_size=500
    )
    reference.update(torch.from_numpy(real), real=True)
    reference.update(torch.from_numpy(fake), real=False)
    reference_mean, _ = reference.compute()
    ours = kid(fake, real, subsets=1, subset_size=500)
    assert ours.subset_size == 500
    assert ours.mean == pytest.approx(float(reference_mean), rel=1e-9)
    assert ours.mean > 0.05


def test_precision_recall_density_coverage_match_prdc(feature_sets, capsys):
    prdc = pytest.importorskip("prdc")
    real, fake = feature_sets
    # prdc takes one k for all four metrics; we take k = 3 for precision/recall and k = 5 for
    # density/coverage, so it runs once per k. Both find the k-th neighbour among the other
    # items (prdc: the (k+1)-th smallest distance, the item itself being the first). Ties:
    # prdc counts a point inside a ball when d < radius, we when d <= radius (see the last
    # test); on continuous features there are none.
    ours = manifold_metrics(real, fake, precision_k=3, density_k=5)
    at_three = prdc.compute_prdc(real, fake, nearest_k=3)
    at_five = prdc.compute_prdc(real, fake, nearest_k=5)
    capsys.readouterr()  # prdc prints the set sizes
    assert ours.precision == pytest.approx(at_three["precision"], abs=1e-12)
    assert ours.recall == pytest.approx(at_three["recall"], abs=1e-12)
    assert ours.density == pytest.approx(at_five["density"], abs=1e-12)
    assert ours.coverage == pytest.approx(at_five["coverage"], abs=1e-12)
    assert 0.05 < ours.precision < 0.95 and 0.05 < ours.coverage < 0.95  # not trivially 0 or 1
    radii = prdc.prdc.compute_nearest_neighbour_distances(real, 5)
    np.testing.assert_allclose(neighbour_radii(real, (5,))[5], radii, rtol=1e-5)


def test_on_exact_ties_our_closed_balls_count_more_than_prdc(capsys):
    prdc = pytest.importorskip("prdc")
    # Points of a unit grid: many fake points sit exactly on a real point's k-NN radius.
    grid = np.stack(np.meshgrid(np.arange(6), np.arange(6)), axis=-1).reshape(-1, 2)
    real, fake = grid.astype(np.float64), grid[::2].astype(np.float64) + np.array([1.0, 0.0])
    ours = manifold_metrics(real, fake, precision_k=3, density_k=3)
    theirs = prdc.compute_prdc(real, fake, nearest_k=3)
    capsys.readouterr()
    assert ours.density > theirs["density"] and ours.coverage > theirs["coverage"]
