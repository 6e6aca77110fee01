"""Character-level recurrent language model (Karpathy's char-rnn; the LSTM of Hochreiter &
Schmidhuber 1997, stacked as in Graves 2013, https://arxiv.org/abs/1308.0850).

Each text is one sequence: `<bos>`, its characters, `<eos>`. The network reads a token's
embedding (plus the class's embedding when conditional) into a stack of LSTM layers and
predicts the next token with a linear layer tied to the input embedding (Press & Wolf 2017).
Training packs a batch's texts end to end into windows of `window` tokens (no padding is
computed; a 400-step recurrence over padded rows is three times slower on a CPU); the loss is
the mean next-token cross entropy over the characters and `<eos>`s predicted. Scoring runs each
text on its own from a zero state.
Sampling runs the recurrence from `<bos>`, one token a step, at the configured temperature and
top-k, until `<eos>` or max_length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from aigc.models.layers import sampling_labels
from aigc.models.text.base import (
    Embeddings,
    TextConfig,
    TextModel,
    finish_rows,
    pack,
    packed_nll,
    pick_next,
    row_lengths,
    shifted_nll,
)
from aigc.params import spec
from aigc.text_sets import BOS, EOS, PAD


@dataclass(frozen=True)
class Config(TextConfig):
    family: ClassVar[str] = "charrnn"

    cell: str = spec(default="lstm", choices=("lstm", "gru"), doc="recurrent cell")
    hidden_size: int = spec(default=256, ge=1, doc="units per recurrent layer")
    layers: int = spec(default=2, ge=1, doc="stacked recurrent layers")
    dropout: float = spec(default=0.1, ge=0.0, lt=1.0, doc="dropout between layers")
    window: int = spec(default=128, ge=2, doc="tokens per packed training window (BPTT length)")


class Recurrent(nn.Module):
    """Tokens (B, T) [+ labels (B,) or (B, T)] -> next-token logits (B, T, V), and the state."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        hidden = config.hidden_size
        classes = config.num_classes if config.conditional else 0
        self.embed = Embeddings(config.vocab_size, hidden, classes)
        cell = nn.LSTM if config.cell == "lstm" else nn.GRU
        dropout = config.dropout if config.layers > 1 else 0.0
        self.rnn = cell(hidden, hidden, config.layers, batch_first=True, dropout=dropout)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(hidden, config.vocab_size)
        self.head.weight = self.embed.tokens.weight  # tied input and output embeddings

    def forward(self, ids, labels=None, state=None):
        outputs, state = self.rnn(self.drop(self.embed(ids, labels)), state)
        return self.head(self.drop(outputs)), state


class CharRNN(TextModel):
    Config = Config

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.network = Recurrent(config)
        self.make_optimizer()

    @property
    def sampling_network(self) -> nn.Module:
        return self.network

    def train_step(self, batch: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One step on the mean next-token cross entropy of the batch's characters and ends,
        its texts packed end to end into windows of `window` tokens (truncated
        backpropagation through time: a text cut by a window's end goes on from a zero
        state)."""
        labels = self.condition(labels)
        ids, _, documents, token_labels = pack(batch, labels, self.config.window)
        logits, _ = self.network(ids[:, :-1], None if labels is None else token_labels[:, :-1])
        loss = packed_nll(logits, ids, documents)
        self.step_optimizer(loss)
        return {"loss": loss.item()}

    def token_nll(self, rows: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Each row on its own from a zero state (the recurrence is causal: the padding after
        a row's end changes nothing before it)."""
        rows = rows[:, : int(row_lengths(rows).max())]
        logits, _ = self.network(rows[:, :-1], labels)
        return shifted_nll(logits, rows)

    @torch.no_grad()
    def sample(
        self, n: int, labels: torch.Tensor | None = None, rng: torch.Generator | None = None
    ) -> torch.Tensor:
        labels = sampling_labels(self.config, n, labels, self.device)
        length = self.config.max_length
        rows = torch.full((n, length), PAD, dtype=torch.long)
        rows[:, 0] = BOS
        done = torch.zeros(n, dtype=torch.bool)
        state = None
        for position in range(1, length):
            previous = rows[:, position - 1 : position].to(self.device)
            logits, state = self.network(previous, labels, state)
            token = pick_next(logits[:, -1], self.temperature, self.top_k, rng)
            rows[:, position] = torch.where(done, PAD, token)
            done |= token == EOS
            if bool(done.all()):
                break
        return finish_rows(rows, done)


MODEL = CharRNN
