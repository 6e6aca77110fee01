"""Membership inference: can an attacker tell a model's training images from unseen ones?

The audit draws `membership_samples` members (training images: `data/degraded`, the originals
the model was trained on) and as many non-members (held-out images of the same distribution:
`data/split/test`), scores each with an attack (higher = "member"), and reports how well the
score separates the two:

- AUC of the ROC curve (0.5 = no better than a coin; the Mann-Whitney form, ties count half);
- the true-positive rate at a false-positive rate of at most `membership_fpr` (1 %): what an
  attacker who must rarely be wrong finds, which matters more than the AUC (Carlini et al.
  2022, "Membership inference attacks from first principles", https://arxiv.org/abs/2112.03570).

Two attacks, each reported, and the stronger one as the headline (`membership_auc`,
`membership_tpr_at_fpr`):

- `model`, white-box: the family's own `membership_scores` (aigc/models/base.py): the ELBO of a
  VAE (a loss-threshold attack, Yeom et al. 2018), the discriminator's logit of a GAN (LOGAN,
  Hayes et al. 2019), the denoising loss of a diffusion model (Carlini et al. 2023). Members
  and non-members are scored in shuffled, mixed batches, so a batch statistic cannot leak
  which set a batch came from.
- `distance`, black-box: minus the distance from the image to its nearest generated sample in
  the evaluator's feature space (GAN-Leaks' full black-box attack, Chen et al. 2020,
  https://arxiv.org/abs/1909.03935). It needs only samples, so it also scores the real row:
  there the "samples" are held-out real images, and the AUC is the floor, 0.5 up to noise.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata

from aigc.metrics import EvaluateParams, nearest_distances

__all__ = ["audit", "draw_audit_sets", "model_scores", "roc_auc", "tpr_at_fpr"]


def roc_auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """P(score of a random member > score of a random non-member), ties counting half."""
    ranks = rankdata(np.concatenate([members, nonmembers]))  # average ranks for ties
    m, n = len(members), len(nonmembers)
    return float((ranks[:m].sum() - m * (m + 1) / 2) / (m * n))


def tpr_at_fpr(members: np.ndarray, nonmembers: np.ndarray, fpr: float) -> float:
    """The share of members scored above a threshold that at most `fpr` of the non-members
    exceed: the best true-positive rate of a threshold attack at that false-positive rate."""
    allowed = int(np.floor(fpr * len(nonmembers)))  # non-members that may pass
    threshold = np.sort(nonmembers)[::-1][allowed] if allowed < len(nonmembers) else -np.inf
    return float((members > threshold).mean())


def draw_audit_sets(train_count: int, heldout_count: int, size: int, seed: int):
    """Row indices (members into the training set, non-members into the held-out set), the
    same number of each: min(size, both set sizes), a seeded random pick."""
    count = min(size, train_count, heldout_count)
    rng = np.random.default_rng([seed, 1])
    members = np.sort(rng.choice(train_count, count, replace=False))
    nonmembers = np.sort(rng.choice(heldout_count, count, replace=False))
    return members, nonmembers


@torch.no_grad()
def model_scores(model, images: np.ndarray, labels: np.ndarray | None, batch_size: int,
                 seed: int, device) -> np.ndarray:  # fmt: skip
    """`model.membership_scores` of uint8 images (N, C, H, W), in shuffled batches (so members
    and non-members, concatenated by the caller, share batches); returned in input order."""
    order = np.random.default_rng([seed, 2]).permutation(len(images))
    scores = np.empty(len(images), dtype=np.float64)
    for start in range(0, len(order), batch_size):
        rows = np.sort(order[start : start + batch_size])  # a random mix of both sets
        batch = torch.from_numpy(np.asarray(images[rows])).float().div_(255).to(device)
        batch_labels = None
        if labels is not None and model.conditional:
            batch_labels = torch.from_numpy(np.asarray(labels[rows])).to(device)
        scores[rows] = model.membership_scores(batch, batch_labels).double().cpu().numpy()
    return scores


def attack_metrics(name: str, members: np.ndarray, nonmembers: np.ndarray, fpr: float) -> dict:
    return {
        f"membership_{name}_auc": roc_auc(members, nonmembers),
        f"membership_{name}_tpr_at_fpr": tpr_at_fpr(members, nonmembers, fpr),
    }


def audit(
    samples: np.ndarray,
    train: np.ndarray,
    heldout: np.ndarray,
    params: EvaluateParams,
    model=None,
    train_set=None,
    heldout_set=None,
    device="cpu",
) -> dict:
    """Membership-inference metrics (see the module docstring).

    `samples`, `train` and `heldout` are evaluator embeddings (N, D) of the generated samples,
    the training images and the held-out images; with `model`, `train_set` and `heldout_set`
    (image sets whose rows those embeddings are), the white-box attack runs too.
    """
    members, nonmembers = draw_audit_sets(
        len(train), len(heldout), params.membership_samples, params.seed
    )
    fpr = params.membership_fpr
    distance = -nearest_distances(np.concatenate([train[members], heldout[nonmembers]]), samples)
    count = len(members)
    result = {"membership_samples": count, "membership_fpr": fpr}
    result.update(attack_metrics("distance", distance[:count], distance[count:], fpr))
    attacks = ["distance"]
    if model is not None:
        images = np.concatenate([train_set.images[members], heldout_set.images[nonmembers]])
        labels = None
        if train_set.labelled and heldout_set.labelled:
            labels = np.concatenate([train_set.labels[members], heldout_set.labels[nonmembers]])
        scores = model_scores(model, images, labels, params.batch_size, params.seed, device)
        result.update(attack_metrics("model", scores[:count], scores[count:], fpr))
        attacks.append("model")
    strongest = max(attacks, key=lambda name: result[f"membership_{name}_auc"])
    result["membership_auc"] = result[f"membership_{strongest}_auc"]
    result["membership_tpr_at_fpr"] = max(result[f"membership_{a}_tpr_at_fpr"] for a in attacks)
    result["membership_attack"] = strongest
    return result
