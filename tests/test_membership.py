"""The membership-inference audit (aigc/membership.py): its AUC and TPR against scikit-learn,
and an audit that can fail: a tiny VAE over-fitted to 32 images is caught (AUC far above 0.5),
while two sets the model never saw stay near 0.5."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import image_set, labelled_images, write_params

from aigc.checkpoint import load_model
from aigc.imagesets import ImageSet
from aigc.membership import audit, draw_audit_sets, model_scores, roc_auc, tpr_at_fpr
from aigc.metrics import EvaluateParams
from aigc.params import load_section
from aigc.training import read_train_params, train

metrics = pytest.importorskip("sklearn.metrics")


def test_auc_equals_scikit_learns_with_ties(rng):
    members = np.round(rng.normal(0.5, 1, 300), 1)  # rounded: many ties
    nonmembers = np.round(rng.normal(0, 1, 400), 1)
    labels = np.r_[np.ones(300), np.zeros(400)]
    expected = metrics.roc_auc_score(labels, np.r_[members, nonmembers])
    assert roc_auc(members, nonmembers) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.2])
def test_tpr_at_fpr_is_the_best_threshold_attack_at_that_false_positive_rate(rng, fpr):
    members, nonmembers = rng.normal(1, 1, 500), rng.normal(0, 1, 1000)
    labels = np.r_[np.ones(500), np.zeros(1000)]
    false, true, _ = metrics.roc_curve(labels, np.r_[members, nonmembers])
    assert tpr_at_fpr(members, nonmembers, fpr) == pytest.approx(true[false <= fpr].max())


def test_perfectly_separated_scores_give_auc_1_and_tpr_1():
    assert roc_auc(np.arange(10.0) + 100, np.arange(10.0)) == 1.0
    assert tpr_at_fpr(np.arange(10.0) + 100, np.arange(10.0), 0.01) == 1.0


def test_audit_sets_are_seeded_disjoint_within_each_set_and_equal_in_size():
    members, nonmembers = draw_audit_sets(500, 80, 100, seed=4)
    assert len(members) == len(nonmembers) == 80
    assert len(set(members.tolist())) == 80
    again = draw_audit_sets(500, 80, 100, seed=4)
    assert np.array_equal(members, again[0]) and np.array_equal(nonmembers, again[1])


@pytest.fixture(scope="module")
def overfitted(tmp_path_factory):
    """A tiny VAE trained 600 steps on the same 32 images (18 s on one CPU thread)."""
    folder = tmp_path_factory.mktemp("overfit")
    images, labels = labelled_images(32, seed=20)
    members = ImageSet(images, labels, ["a", "b", "c", "d", "e"])
    section = {"steps": 600, "batch_size": 32, "width": 8, "latent_dim": 8, "warmup_steps": 0}
    params = write_params(folder, {"train": {"common": {"device": "cpu"}, "vae": section}})
    common, loop, config, _ = read_train_params(params, "vae", members)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train("vae", config, loop, common, members, out=folder / "model.pt",
              live_dir=folder / "live", resume_dir=folder / "resume")  # fmt: skip
    finally:
        torch.set_num_threads(before)
    model, _ = load_model(folder / "model.pt")
    return model, members, load_section(params, "evaluate", EvaluateParams)


def test_the_audit_catches_a_model_overfitted_to_its_training_images(overfitted):
    model, members, params = overfitted
    unseen = image_set(32, seed=21)
    embeddings = np.zeros((32, 2))  # the distance attack is not under test here
    result = audit(embeddings, embeddings, embeddings, params, model, members, unseen)
    assert result["membership_model_auc"] > 0.8  # 32 vs 32: the AUC's SE is about 0.07
    assert result["membership_model_tpr_at_fpr"] > 0.1  # members above every non-member
    assert result["membership_auc"] >= result["membership_model_auc"]


def test_on_two_sets_the_model_never_saw_the_audit_stays_near_one_half(overfitted):
    model, _, params = overfitted
    first, second = image_set(400, seed=22), image_set(400, seed=23)
    scores = model_scores(model, np.concatenate([first.images, second.images]), None, 64, 0, "cpu")
    assert abs(roc_auc(scores[:400], scores[400:]) - 0.5) < 0.07  # 3 SE of AUC at 400 vs 400


def test_the_distance_attack_flags_samples_that_copy_their_training_images(rng):
    params = EvaluateParams(**{**PARAMS, "membership_samples": 200})
    train_features = rng.normal(size=(300, 8))
    heldout_features = rng.normal(size=(300, 8))
    copies = train_features[:250] + rng.normal(0, 0.01, (250, 8))  # samples = near-copies
    caught = audit(copies, train_features, heldout_features, params)
    assert caught["membership_distance_auc"] > 0.75 and caught["membership_attack"] == "distance"
    fresh = audit(rng.normal(size=(250, 8)), train_features, heldout_features, params)
    assert abs(fresh["membership_distance_auc"] - 0.5) < 0.1


PARAMS = dict(
    batch_size=64, kid_subsets=5, kid_subset_size=32, fid_bootstrap_rounds=2, inception_splits=1,
    precision_k=3, density_k=5, class_threshold=0.2, copy_quantile=0.01,
    reconstruction_samples=10, membership_samples=2000, membership_fpr=0.01, device="cpu", seed=0,
)  # fmt: skip
