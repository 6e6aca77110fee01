"""Making text from a trained text family, and scoring held-out text by its likelihood.

Everything is seeded by a CPU `torch.Generator`: the same checkpoint and seed give the same
texts on the same machine.

- `TextSampleParams`: params.yaml `text_sample`.
- `generate`: `num_samples` texts in batches at the sampling temperature and top-k; a
  conditional model gets balanced labels 0, 1, ..., K-1, 0, ... (returned), else labels -1.
- `held_out_bits`: bits per character of a text set under the model, each text's characters
  and its `<eos>` counted (a unigram model of the fortunes corpus is about 4.5). For a VAE it is
  the negative ELBO per character, an upper bound on the NLL, and says so (`bound`).
- `reconstructions` and `homotopy` (families that encode): texts next to their reconstruction
  from the posterior mean, and the texts decoded along the straight line between the latent
  codes of two held-out texts (Bowman et al. 2016, section 5.2).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from aigc.models.layers import default_labels
from aigc.params import spec
from aigc.text_sets import BOS, TextSet

__all__ = ["TextSampleParams", "generate", "held_out_bits", "reconstructions", "homotopy"]


@dataclass(frozen=True)
class TextSampleParams:
    """params.yaml `text_sample` (defaults apply when there is no params file)."""

    num_samples: int = spec(default=1000, ge=1, doc="texts written")
    batch_size: int = spec(default=250, ge=1, doc="texts sampled in parallel")
    temperature: float = spec(default=1.0, gt=0.0, doc="softmax temperature")
    top_k: int = spec(default=0, ge=0, doc="draw from the k likeliest tokens (0 = all)")
    seed: int = spec(default=0, ge=0, doc="seed of the sampling noise")
    decode_temperature: float = spec(
        default=0.5, gt=0.0, doc="softmax temperature of reconstructions and the homotopy"
    )


@torch.no_grad()
def generate(
    model, num_samples: int, batch_size: int, seed: int, classes: list[int] | None = None
) -> tuple[list[str], np.ndarray, float]:
    """(texts, labels int64 (N,) with -1 = none, seconds taken)."""
    rng = torch.Generator().manual_seed(seed)
    labels = None
    if model.conditional:
        wanted = torch.tensor(classes) if classes else torch.arange(model.config.num_classes)
        labels = wanted[default_labels(num_samples, len(wanted))]
    texts: list[str] = []
    started = time.perf_counter()
    for start in range(0, num_samples, batch_size):
        count = min(batch_size, num_samples - start)
        batch_labels = None if labels is None else labels[start : start + count]
        texts += model.texts(model.sample(count, batch_labels, rng))
    seconds = time.perf_counter() - started
    label_array = labels.numpy() if labels is not None else np.full(num_samples, -1)
    return texts, label_array.astype(np.int64), seconds


def model_rows(model, texts: list[str]) -> torch.Tensor:
    """Texts as the model's token rows (its vocabulary and max_length; longer texts are cut)."""
    return torch.from_numpy(model.vocabulary.rows(texts, model.config.max_length))


@torch.no_grad()
def held_out_bits(model, text_set: TextSet, batch_size: int = 256) -> dict:
    """{"bits_per_character", "bound": "exact" | "elbo", "characters"} of `text_set`, every
    text's characters and its `<eos>` predicted from its `<bos>` (conditional models are given
    each text's class)."""
    model.eval()
    texts, labels = text_set.texts, torch.from_numpy(text_set.labels)
    nats, predicted = 0.0, 0
    for start in range(0, len(texts), batch_size):
        rows = model_rows(model, texts[start : start + batch_size]).to(model.device)
        batch_labels = labels[start : start + batch_size].to(model.device)
        nll = model.token_nll(rows, batch_labels if model.conditional else None)
        nats += float(nll.double().sum())
        predicted += int((rows > BOS).sum())  # characters and <eos>: tokens after <bos>
    return {
        "bits_per_character": nats / math.log(2) / predicted,
        "bound": model.bound,
        "characters": predicted,
    }


def picked_texts(text_set: TextSet, count: int) -> tuple[list[str], torch.Tensor]:
    """`count` texts spread evenly over `text_set` (and their labels)."""
    picked = np.linspace(0, len(text_set) - 1, min(count, len(text_set))).astype(int)
    texts = [text_set.texts[i] for i in picked]
    return texts, torch.from_numpy(text_set.labels[picked])


@torch.no_grad()
def decode_at(model, z, labels, temperature: float, seed: int) -> torch.Tensor:
    """Rows decoded from z, drawn at `temperature` (the whole vocabulary) by a generator seeded
    with `seed`. Greedy decoding of a character decoder falls into loops ("the stand the stand
    ..."); a low temperature shows the likely text without them."""
    kept = model.temperature, model.top_k
    model.configure_text_sampling(temperature, 0)
    try:
        return model.decode_latents(z, labels, torch.Generator().manual_seed(seed))
    finally:
        model.configure_text_sampling(*kept)


@torch.no_grad()
def reconstructions(
    model, text_set: TextSet, count: int = 8, temperature: float = 0.5, seed: int = 0
) -> list[dict] | None:
    """[{"text", "reconstruction"}] of `count` held-out texts: the posterior mean decoded at
    `temperature` (decode_at); None for families that do not encode."""
    if not model.encodes or len(text_set) == 0:
        return None
    texts, labels = picked_texts(text_set, count)
    rows = model_rows(model, texts).to(model.device)
    labels = labels.to(model.device) if model.conditional else None
    rebuilt = model.texts(decode_at(model, model.encode(rows, labels), labels, temperature, seed))
    return [{"text": a, "reconstruction": b} for a, b in zip(texts, rebuilt, strict=True)]


@torch.no_grad()
def homotopy(
    model, text_set: TextSet, steps: int = 7, temperature: float = 0.5, seed: int = 0
) -> dict | None:
    """{"from", "to", "texts"}: z = (1 - t) mu_a + t mu_b at `steps` evenly spaced t, between
    the first and last of the texts `reconstructions` shows, each decoded at `temperature` with
    the same noise (a generator seeded with `seed` per point), so the texts differ by z alone;
    None for families that do not encode. A conditional model keeps the first text's class."""
    if not model.encodes or len(text_set) < 2:
        return None
    texts, labels = picked_texts(text_set, 8)
    first, last = texts[0], texts[-1]
    rows = model_rows(model, [first, last]).to(model.device)
    pair_labels = labels[[0, -1]].to(model.device) if model.conditional else None
    mu = model.encode(rows, pair_labels)
    weights = torch.linspace(0, 1, steps, device=mu.device)[:, None]
    path = (1 - weights) * mu[0] + weights * mu[1]
    point_labels = None if pair_labels is None else pair_labels[:1]
    decoded = [decode_at(model, z[None], point_labels, temperature, seed)[0] for z in path]
    return {"from": first, "to": last, "texts": model.texts(torch.stack(decoded))}
