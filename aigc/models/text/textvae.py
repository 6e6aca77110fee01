"""A variational autoencoder of texts with LSTM encoder and decoder (Bowman et al. 2016,
"Generating Sentences from a Continuous Space", https://arxiv.org/abs/1511.06349).

The encoder LSTM reads a text's characters; from its last state come the mean mu and
log-variance logvar of q(z | x). The decoder LSTM is a language model that also sees z: z sets
its initial state and is fed beside every input token. The loss per text is the negative ELBO,

    -log p(x | z) + beta_t * KL(q(z | x) || N(0, I)),    z = mu + sigma * eps,

with the defences against posterior collapse (the decoder ignoring z) that Bowman et al.
found: KL annealing (beta_t rises linearly from 0 to 1 over `kl_warmup_steps`) and word (here
character) dropout, which replaces each decoder input by `<unk>` with probability
`input_dropout`, so the decoder must lean on z; plus free bits (Kingma et al. 2016): each
latent dimension's KL below `free_bits` nats is not penalised, a floor that keeps z in use.
Held-out bits per character are the negative ELBO (at beta = 1, with no free bits, one z drawn
per text from a fixed seed): a bound on the true NLL (`bound = "elbo"`).

Samples decode z ~ N(0, I), the prior; `encode`/`reconstruct` map texts to mu and back;
`decode_latents` decodes given z, which the homotopy between two texts walks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from aigc.models.layers import gaussian_kl_terms, sampling_labels
from aigc.models.text.base import (
    Embeddings,
    TextConfig,
    TextModel,
    finish_rows,
    pick_next,
    row_lengths,
    shifted_nll,
)
from aigc.params import spec
from aigc.text_sets import BOS, EOS, PAD, UNK

ELBO_SEED = 1234  # the eps of the held-out bound's one z per text


@dataclass(frozen=True)
class Config(TextConfig):
    family: ClassVar[str] = "textvae"

    latent_dim: int = spec(default=32, ge=1, doc="size of z")
    hidden_size: int = spec(default=128, ge=1, doc="units of the encoder and decoder LSTMs")
    embedding_dim: int = spec(default=64, ge=1, doc="size of the character embeddings")
    kl_warmup_steps: int = spec(default=400, ge=0, doc="steps of the linear KL annealing")
    input_dropout: float = spec(default=0.25, ge=0.0, lt=1.0, doc="decoder inputs -> <unk>")
    free_bits: float = spec(default=0.1, ge=0.0, doc="KL nats per latent dim not penalised")


class TextVAE(TextModel):
    Config = Config
    encodes = True
    bound = "elbo"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        hidden, classes = config.hidden_size, config.num_classes if config.conditional else 0
        self.encoder_embed = Embeddings(config.vocab_size, config.embedding_dim, classes)
        self.encoder = nn.LSTM(config.embedding_dim, hidden, batch_first=True)
        self.posterior = nn.Linear(hidden, 2 * config.latent_dim)
        self.decoder = Decoder(config)
        self.make_optimizer()

    @property
    def sampling_network(self) -> nn.Module:
        return self.decoder

    def posterior_of(self, rows, labels):
        """(mu, logvar) (B, latent_dim) of q(z | rows) from the encoder's last state."""
        rows = rows[:, : int(row_lengths(rows).max())]
        outputs, _ = self.encoder(self.encoder_embed(rows, labels))  # causal: padding is after
        last = outputs[torch.arange(len(rows)), row_lengths(rows) - 1]  # the state at <eos>
        mu, logvar = self.posterior(last).chunk(2, dim=1)
        return mu, logvar

    def kl_weight(self) -> float:
        warmup = self.config.kl_warmup_steps
        return 1.0 if warmup == 0 else min(1.0, int(self.steps_done) / warmup)

    def train_step(self, batch: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One step on the annealed negative ELBO, per character (and <eos>) of the batch."""
        labels = self.condition(labels)
        rows = batch[:, : int(row_lengths(batch).max())]
        mu, logvar = self.posterior_of(rows, labels)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        inputs = rows[:, :-1]
        dropped = torch.rand(inputs.shape, device=rows.device) < self.config.input_dropout
        inputs = inputs.masked_fill(dropped & (inputs > BOS), UNK)  # keep <bos> and padding
        reconstruction = shifted_nll(self.decoder(inputs, z, labels), rows)
        kl = gaussian_kl_terms(mu, logvar)  # (B, latent_dim)
        # free bits: each dimension's batch-mean KL is penalised only above the floor
        penalised = kl.mean(0).clamp(min=self.config.free_bits).sum()
        characters = (row_lengths(rows) - 1).sum()
        per_text = reconstruction.sum() / len(rows) + self.kl_weight() * penalised
        loss = per_text * len(rows) / characters  # nats per character (and <eos>)
        self.step_optimizer(loss)
        return {
            "loss": loss.item(),
            "reconstruction": (reconstruction.sum() / characters).item(),
            "kl": kl.sum(1).mean().item(),
        }

    def token_nll(self, rows: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The negative ELBO (B,) in nats at beta = 1: reconstruction at one z ~ q + KL."""
        rows = rows[:, : int(row_lengths(rows).max())]
        mu, logvar = self.posterior_of(rows, labels)
        eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(ELBO_SEED))
        z = mu + eps.to(mu.device) * (0.5 * logvar).exp()
        reconstruction = shifted_nll(self.decoder(rows[:, :-1], z, labels), rows)
        return reconstruction + gaussian_kl_terms(mu, logvar).sum(1)

    @torch.no_grad()
    def encode(self, rows: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        labels = sampling_labels(self.config, len(rows), labels, self.device)
        mu, _ = self.posterior_of(rows.to(self.device), labels)
        return mu

    @torch.no_grad()
    def reconstruct(self, rows: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        labels = sampling_labels(self.config, len(rows), labels, self.device)
        return self.decode_latents(self.encode(rows, labels), labels)

    @torch.no_grad()
    def sample(
        self, n: int, labels: torch.Tensor | None = None, rng: torch.Generator | None = None
    ) -> torch.Tensor:
        """Texts decoded from z ~ N(0, I) (the prior), drawn by `rng`."""
        z = torch.randn(n, self.config.latent_dim, generator=rng).to(self.device)
        return self.decode_latents(z, labels, rng)

    @torch.no_grad()
    def decode_latents(self, z, labels=None, rng: torch.Generator | None = None) -> torch.Tensor:
        """Token rows decoded from z (B, latent_dim): drawn at the sampling temperature when
        `rng` is given, else greedily (the likeliest token each step)."""
        labels = sampling_labels(self.config, len(z), labels, self.device)
        n, length = len(z), self.config.max_length
        rows = torch.full((n, length), PAD, dtype=torch.long)
        rows[:, 0] = BOS
        done = torch.zeros(n, dtype=torch.bool)
        state = None
        for position in range(1, length):
            previous = rows[:, position - 1 : position].to(self.device)
            logits, state = self.decoder.step(previous, z, labels, state)
            if rng is None:
                logits = logits[:, -1].float().cpu()
                logits[:, [PAD, BOS]] = -torch.inf
                token = logits.argmax(1)
            else:
                token = pick_next(logits[:, -1], self.temperature, self.top_k, rng)
            rows[:, position] = torch.where(done, PAD, token)
            done |= token == EOS
            if bool(done.all()):
                break
        return finish_rows(rows, done)


class Decoder(nn.Module):
    """An LSTM language model given z: z sets the initial state and rides beside every input."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        classes = config.num_classes if config.conditional else 0
        self.embed = Embeddings(config.vocab_size, config.embedding_dim, classes)
        self.initial = nn.Linear(config.latent_dim, 2 * config.hidden_size)
        self.rnn = nn.LSTM(config.embedding_dim + config.latent_dim, config.hidden_size,
                           batch_first=True)  # fmt: skip
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def start(self, z):
        h, c = torch.tanh(self.initial(z)).chunk(2, dim=1)
        return h[None].contiguous(), c[None].contiguous()

    def inputs(self, ids, z, labels):
        vectors = self.embed(ids, labels)
        return torch.cat([vectors, z[:, None, :].expand(-1, ids.shape[1], -1)], dim=2)

    def forward(self, ids, z, labels):
        """Logits (B, T, V) at every input token of ids (B, T) (padded rows: the recurrence
        is causal, and a loss masks what comes after a row's end)."""
        outputs, _ = self.rnn(self.inputs(ids, z, labels), self.start(z))
        return self.head(outputs)

    def step(self, ids, z, labels, state):
        """Logits (B, 1, V) of the next token and the new state (state None: from z)."""
        outputs, state = self.rnn(self.inputs(ids, z, labels), state or self.start(z))
        return self.head(outputs), state


MODEL = TextVAE
