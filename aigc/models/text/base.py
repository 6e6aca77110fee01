"""The text half of the family contract, and the pieces the text families share.

- `TextConfig`: a `FamilyConfig` with the data's `vocabulary` and `max_length` (a row's length:
  `<bos>`, up to max_length - 2 characters, `<eos>`; both from the training split, never from
  params.yaml) and the optimiser's schedule (AdamW, linear warm-up, cosine decay to
  `final_learning_rate` x learning_rate over the run, gradients clipped to `grad_clip`).
- `TextModel`: a family that trains on token rows (B, L) of aigc.text_sets.TokenSet and adds,
  to the contract of aigc/models/base.py:

      token_nll(rows, labels) -> (B,)          nats of each row's characters and <eos>, given
                                                <bos> (for a VAE: the negative ELBO, a bound;
                                                `bound` says which)
      sample(n, labels, rng) -> (n, L) rows    autoregressive, at `temperature` and `top_k`
      configure_text_sampling(temperature, top_k)
      decode_latents(z, labels, rng)            rows from latent codes (families that encode)
      texts(rows) -> [str]                      rows decoded with the vocabulary

  `plan(total_steps)` is called by the loop before training, so the schedule knows the run's
  length; the schedule is a function of the step alone, so a resumed run follows it exactly.
- Stateless helpers: `row_lengths`, `shifted_nll` (the masked next-token loss of whole rows),
  `pack` and `packed_nll` (a batch's texts end to end in windows, and their loss), `pick_next`
  (temperature and top-k sampling from a CPU generator), `Embeddings` (characters, plus a class
  embedding added at every position when conditional).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc.models.base import FamilyConfig, GenerativeModel
from aigc.models.layers import sampling_labels
from aigc.params import ParamsError, spec
from aigc.text_sets import BOS, EOS, PAD, Vocabulary

PREVIEW_TEXTS = 4  # sample texts the loop logs each epoch


@dataclass(frozen=True, kw_only=True)
class TextConfig(FamilyConfig):
    """The fields every text family's Config shares."""

    cannot_train_privately = "DP-SGD is implemented for the image families only"

    vocabulary: tuple[str, ...] = spec(doc="the training split's tokens (from the data)")
    max_length: int = spec(ge=3, doc="tokens per row: <bos>, characters, <eos> (from the data)")
    learning_rate: float = spec(default=3e-3, gt=0.0, doc="peak AdamW learning rate")
    beta1: float = spec(default=0.9, ge=0.0, lt=1.0, doc="AdamW beta1")
    beta2: float = spec(default=0.99, ge=0.0, lt=1.0, doc="AdamW beta2")
    weight_decay: float = spec(default=0.01, ge=0.0, doc="AdamW weight decay (matrices only)")
    warmup_steps: int = spec(default=100, ge=0, doc="steps of the linear learning-rate warm-up")
    final_learning_rate: float = spec(
        default=0.1, ge=0.0, le=1.0, doc="share of learning_rate the cosine decay ends at"
    )
    grad_clip: float = spec(default=1.0, ge=0.0, doc="max gradient norm (0 = no clipping)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "vocabulary", tuple(self.vocabulary))  # a list from a checkpoint
        super().__post_init__()
        if len(self.vocabulary) <= EOS + 1:
            raise ParamsError(f"train.{self.family}: the vocabulary holds no characters")

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)


class TextModel(GenerativeModel):
    """A text family: batches are int64 token rows (B, L), `<bos>` first, `<pad>` after
    `<eos>`. A subclass builds its networks, calls `make_optimizer`, and implements
    `train_step`, `token_nll` and `sample` (see the module docstring)."""

    modality = "text"
    bound = "exact"  # token_nll is the exact NLL ("elbo": a bound, the negative ELBO)

    def __init__(self, config: TextConfig) -> None:
        super().__init__(config)
        self.temperature, self.top_k = 1.0, 0
        self.total_steps = 0
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    @abc.abstractmethod
    def token_nll(self, rows: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Nats (B,) of each row's characters and `<eos>` given `<bos>` (labels: conditional)."""

    def decode_latents(self, z, labels=None, rng: torch.Generator | None = None) -> torch.Tensor:
        """Token rows decoded from latent codes z (families that encode)."""
        raise NotImplementedError(f"{type(self).__name__} has no latent code")

    # -- sampling --------------------------------------------------------------------------------

    def configure_text_sampling(self, temperature: float = 1.0, top_k: int = 0) -> None:
        """Softmax temperature and top-k (0 = the whole vocabulary) of `sample`."""
        if temperature <= 0:
            raise ParamsError(f"text_sample.temperature = {temperature}; allowed: > 0")
        self.temperature, self.top_k = temperature, top_k

    @property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary(list(self.config.vocabulary))

    def texts(self, rows: torch.Tensor) -> list[str]:
        vocabulary = self.vocabulary
        return [vocabulary.decode(row) for row in rows.tolist()]

    @torch.no_grad()
    def preview(self, rng: torch.Generator) -> str:
        """A few sample texts, one paragraph each (one per class in turn when conditional)."""
        return "\n\n".join(self.texts(self.sample(PREVIEW_TEXTS, rng=rng)))

    @torch.no_grad()
    def membership_scores(
        self, batch: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Minus the nats per token of each row (the loss-threshold attack, Yeom et al. 2018)."""
        batch = batch.to(self.device)
        labels = sampling_labels(self.config, len(batch), labels, self.device)
        return -self.token_nll(batch, labels) / (row_lengths(batch) - 1).clamp(min=1)

    # -- training helpers ------------------------------------------------------------------------

    def plan(self, total_steps: int) -> None:
        """The run's length, which the cosine schedule decays over."""
        self.total_steps = total_steps

    def make_optimizer(self) -> None:
        """AdamW over every parameter; weight decay on matrices only (not on biases, norms,
        embeddings), as GPT-2-style training does."""
        embeddings = {
            id(module.weight) for module in self.modules() if isinstance(module, nn.Embedding)
        }
        decayed, plain = [], []
        for parameter in self.parameters():
            is_matrix = parameter.dim() >= 2 and id(parameter) not in embeddings
            (decayed if is_matrix else plain).append(parameter)
        groups = [
            {"params": decayed, "weight_decay": self.config.weight_decay},
            {"params": plain, "weight_decay": 0.0},
        ]
        rate, betas = self.config.learning_rate, self.config.betas
        self.optimizers = {"model": torch.optim.AdamW(groups, rate, betas)}

    def learning_rate(self, step: int) -> float:
        """Linear warm-up to learning_rate, then cosine decay to final_learning_rate of it."""
        config = self.config
        peak = config.learning_rate
        if step < config.warmup_steps:
            return peak * (step + 1) / config.warmup_steps
        span = max(1, self.total_steps - config.warmup_steps)
        progress = min(1.0, (step - config.warmup_steps) / span)
        floor = peak * config.final_learning_rate
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def step_optimizer(self, loss: torch.Tensor) -> None:
        """One AdamW step on `loss` at this step's learning rate, gradients clipped."""
        optimizer = self.optimizers["model"]
        for group in optimizer.param_groups:
            group["lr"] = self.learning_rate(int(self.steps_done))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.parameters(), self.config.grad_clip)
        optimizer.step()
        self.steps_done += 1


class Embeddings(nn.Module):
    """Token ids (B, T) -> vectors (B, T, dim), plus the class's embedding at every position
    when `classes` > 0 (conditioning of the language models: the one vector a class is, added
    where every layer sees it)."""

    def __init__(self, vocab_size: int, dim: int, classes: int = 0) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim)
        self.classes = nn.Embedding(classes, dim) if classes else None
        if self.classes is not None:
            nn.init.zeros_(self.classes.weight)  # start as the unconditional model

    def forward(self, ids: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        vectors = self.tokens(ids)
        if self.classes is not None and labels is not None:  # labels (B,), or (B, T) per token
            classes = self.classes(labels)
            vectors = vectors + (classes[:, None, :] if labels.dim() == 1 else classes)
        return vectors


def row_lengths(rows: torch.Tensor) -> torch.Tensor:
    """Tokens (B,) of each row up to and including its `<eos>`: `<bos>` + characters + 1."""
    return (rows != PAD).sum(1)


def shifted_nll(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Nats (B,) of predicting rows[:, 1:] from logits (B, T - 1, V) at rows[:, :-1]; padding
    is not predicted."""
    targets = rows[:, 1:]
    losses = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
    return (losses * (targets != PAD)).sum(1)


def pick_next(
    logits: torch.Tensor, temperature: float, top_k: int, rng: torch.Generator | None
) -> torch.Tensor:
    """One token id per row of logits (B, V), drawn at `temperature` from the `top_k` likeliest
    (0 = all) by the CPU generator `rng`; `<pad>` and `<bos>` are never drawn."""
    logits = logits.float().cpu() / temperature
    logits[:, [PAD, BOS]] = -math.inf
    if 0 < top_k < logits.shape[1]:
        kth = logits.topk(top_k, dim=1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    return torch.multinomial(logits.softmax(1), 1, generator=rng)[:, 0]


def finish_rows(rows: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
    """Rows (n, L) with an `<eos>` at the end of each one never closed, padding after."""
    unfinished = ~done
    rows[unfinished, -1] = EOS
    after = (rows == EOS).int().cumsum(1) - (rows == EOS).int() > 0
    return rows.masked_fill(after, PAD)


def pack(rows: torch.Tensor, labels: torch.Tensor | None, context: int):
    """A batch's rows end to end, cut into windows of `context` + 1 tokens.

    Returns (ids, positions, documents, labels) each (W, context + 1): the token, its position
    in its text, its text's index in the batch, its text's label (None when unconditional).
    The stream is padded at its end with `<pad>` of a document of its own, which predicts
    nothing and is attended by nothing else."""
    lengths = row_lengths(rows)
    valid = rows != PAD
    ids = rows[valid]
    documents = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), lengths)
    starts = torch.cumsum(lengths, 0) - lengths
    positions = torch.arange(len(ids), device=rows.device) - starts[documents]
    window = context + 1
    missing = -len(ids) % window
    if missing:
        ids = torch.cat([ids, ids.new_full((missing,), PAD)])
        positions = torch.cat([positions, positions.new_zeros(missing)])
        documents = torch.cat([documents, documents.new_full((missing,), len(rows))])
    token_labels = None
    if labels is not None:
        token_labels = torch.cat([labels, labels.new_zeros(1)])[documents]
    shape = (-1, window)
    cut = [t.view(shape) for t in (ids, positions, documents)]
    return (*cut, None if token_labels is None else token_labels.view(shape))


def packed_nll(logits: torch.Tensor, ids: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """Mean nats of predicting packed windows' next tokens ids[:, 1:] from logits (W, T, V)
    at ids[:, :-1]: only a token of the same text (the first token of the next text, and the
    padding, are not predicted)."""
    targets = ids[:, 1:]
    predicted = (documents[:, 1:] == documents[:, :-1]) & (targets != PAD)
    losses = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
    return (losses * predicted).sum() / predicted.sum()
