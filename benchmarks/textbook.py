"""Textbook baselines: the plain MLP VAE and MLP GAN, scored on the ruler beside the families.

The two generators every course starts from, trained on the pipeline's own data:

- **MLP VAE** (Kingma & Welling 2014, https://arxiv.org/abs/1312.6114), as pytorch/examples'
  `vae/main.py` writes it: pixels -> 400 -> ReLU -> (mu, logvar) of 20; 20 -> 400 -> ReLU ->
  pixels -> sigmoid; loss = Bernoulli BCE summed over pixels and batch + KL; Adam 1e-3, batch
  128; 10 epochs by default (of data/train: the originals and their augmented copies).
- **MLP GAN** (Goodfellow et al. 2014, https://arxiv.org/abs/1406.2661), as the well-known
  `gan.py` of eriklindernoren/PyTorch-GAN formulates it: G z 100 -> 128 -> 256 -> 512 -> 1024 ->
  pixels (LeakyReLU 0.2, batch norm after every hidden layer but the first, tanh); D pixels ->
  512 -> 256 -> 1 (LeakyReLU 0.2); BCE with the non-saturating generator loss, Adam 2e-4 with
  betas (0.5, 0.999), batch 64, G's update before D's, D's loss the mean of its real and fake
  terms; 8000 steps by default, the pipeline's `gan` budget (8000 x 64; minutes on a 2-core
  CPU). Written here from that description, with the pipeline's loss functions.

Why: a family's FID means little on its own. These rows say what the pipeline's families gain
over the formulation found in every tutorial, measured with everything else held fixed: the
same training images (data/train, which train@MODEL reads, drawn by the training loop's own
`Batches`), the same sampling code (`aigc.sampling.generate`, as sample@MODEL) and the same
ruler (the evaluate stage itself, run in this process on the samples, against data/split/test
with data/split/val held out). The pipeline's rows are read from metrics/*.json, their training
seconds from logs/MODEL/metrics.json, as the last `dvc repro` left them: compare the
"Train s" column only when that run was on this machine. Prints one table: each row's training
seconds, FID ± SE, recall, coverage, classes covered and class KL, the real floor first.
Seeded (SEED) and trained on the `auto` device (CUDA if present), so a CPU re-run gives the same
rows but for the seconds.

    python -m benchmarks.textbook [--vae-epochs 10] [--gan-steps 8000] [--samples 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aigc.devices import resolve_device
from aigc.distributed import World
from aigc.imagesets import ImageSet, load_image_set
from aigc.models.base import (
    AdversarialConfig,
    NoiseGAN,
    VariationalAutoencoder,
    VariationalConfig,
)
from aigc.models.layers import discriminator_loss, gaussian_kl, generator_loss, reparameterise
from aigc.params import spec
from aigc.report import COLUMNS, Row, load_rows, markdown_table, model_names, read_json
from aigc.sampling import generate
from aigc.training import Batches
from stages import evaluate  # the stage itself, run in process, so that the ruler cannot drift

SEED = 0  # of the initial weights, the batch order, the training noise and the samples
VAE_BATCH, GAN_BATCH = 128, 64  # images per step, as pytorch/examples' vae and gan.py
SAMPLE_BATCH = 500  # images per sampling forward pass (params.yaml sample.batch_size)
TRAIN = Path("data/train")  # the paths of dvc.yaml's train and evaluate stages
SPLITS = Path("data/split")
EVALUATOR = Path("models/evaluator.pt")
METRICS, LOGS = Path("metrics"), Path("logs")
TABLE_KEYS = ("train_seconds", "fid", "recall", "coverage", "classes_covered", "class_kl")


# ---------------------------------------------------------------- the textbook MLP VAE


@dataclass(frozen=True)
class TextbookVAEConfig(VariationalConfig):
    family: ClassVar[str] = "textbook-vae"

    hidden: int = spec(default=400, ge=1, doc="units of the one hidden layer each way")
    latent_dim: int = spec(default=20, ge=1, doc="size of z")
    learning_rate: float = spec(default=1e-3, gt=0.0, doc="Adam learning rate")
    beta1: float = spec(default=0.9, ge=0.0, lt=1.0, doc="Adam beta1")


class MLPEncoder(nn.Module):
    """Images (B, C, H, W) -> flattened -> hidden -> ReLU -> mu, logvar (B, latent_dim) each."""

    def __init__(self, pixels: int, hidden: int, latent_dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.body(images)  # (B, hidden)
        return self.mu(hidden), self.logvar(hidden)


class MLPDecoder(nn.Module):
    """z (B, latent_dim) -> hidden -> ReLU -> pixel logits (B, C, H, W); the sigmoid that makes
    them Bernoulli means is applied by the loss (with logits, for stability) and by `decode`."""

    def __init__(self, shape: tuple[int, int, int], hidden: int, latent_dim: int) -> None:
        super().__init__()
        self.shape = shape
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, math.prod(shape))
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)


class TextbookVAE(VariationalAutoencoder):
    """The MLP VAE of Kingma & Welling 2014 (appendix C.2), as pytorch/examples trains it."""

    Config = TextbookVAEConfig

    def __init__(self, config: TextbookVAEConfig) -> None:
        super().__init__(config)
        shape = (config.channels, config.image_size, config.image_size)
        self.encoder = MLPEncoder(math.prod(shape), config.hidden, config.latent_dim)
        self.decoder = MLPDecoder(shape, config.hidden, config.latent_dim)
        adam = torch.optim.Adam(self.parameters(), config.learning_rate, config.betas)
        self.optimizers = {"vae": adam}

    def loss_terms(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, KL), each summed over the batch, as pytorch/examples' loss_function:
        BCE(sigmoid(logits), x) summed over pixels, and -1/2 sum(1 + logvar - mu^2 - e^logvar)."""
        mu, logvar = self.encoder(images)  # (B, latent_dim) each
        logits = self.decoder(reparameterise(mu, logvar))  # (B, C, H, W)
        reconstruction = F.binary_cross_entropy_with_logits(logits, images, reduction="sum")
        return reconstruction, gaussian_kl(mu, logvar)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One Adam step on the negative ELBO summed over the batch (reported per image)."""
        reconstruction, kl = self.loss_terms(images)
        self.optimize("vae", reconstruction + kl)
        count = len(images)
        return {"reconstruction": reconstruction.item() / count, "kl": kl.item() / count}


# ---------------------------------------------------------------- the textbook MLP GAN


@dataclass(frozen=True)
class TextbookGANConfig(AdversarialConfig):
    family: ClassVar[str] = "textbook-gan"

    latent_dim: int = spec(default=100, ge=1, doc="size of the noise vector z")


def generator_block(inputs: int, outputs: int, batch_norm: bool) -> list[nn.Module]:
    """Linear -> (BatchNorm1d) -> LeakyReLU 0.2. (gan.py passes 0.8 as BatchNorm1d's second
    argument, which is eps, most likely meant as momentum; the defaults are kept here.)"""
    norm = [nn.BatchNorm1d(outputs)] if batch_norm else []
    return [nn.Linear(inputs, outputs), *norm, nn.LeakyReLU(0.2)]


class MLPGenerator(nn.Module):
    """z (B, latent_dim) -> 128 -> 256 -> 512 -> 1024 -> tanh image (B, C, H, W) in [-1, 1]."""

    def __init__(self, latent_dim: int, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.shape = shape
        self.net = nn.Sequential(
            *generator_block(latent_dim, 128, batch_norm=False),
            *generator_block(128, 256, batch_norm=True),
            *generator_block(256, 512, batch_norm=True),
            *generator_block(512, 1024, batch_norm=True),
            nn.Linear(1024, math.prod(shape)),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)


class MLPDiscriminator(nn.Module):
    """Image (B, C, H, W) -> flattened -> 512 -> 256 -> one logit per image (B,); the sigmoid
    of gan.py is inside the BCE-with-logits losses."""

    def __init__(self, pixels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(pixels, 512),
            nn.LeakyReLU(0.2),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2),
            nn.Linear(256, 1),
        )

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(images).squeeze(1)


class TextbookGAN(NoiseGAN):
    """The MLP GAN of Goodfellow et al. 2014 in gan.py's formulation (Adam 2e-4, betas 0.5,
    0.999: the Config's defaults)."""

    Config = TextbookGANConfig

    def __init__(self, config: TextbookGANConfig) -> None:
        shape = (config.channels, config.image_size, config.image_size)
        super().__init__(
            config, MLPGenerator(config.latent_dim, shape), MLPDiscriminator(math.prod(shape))
        )

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """G's update, then D's, on one batch (gan.py's order)."""
        real = images * 2 - 1  # (B, C, H, W) in [-1, 1], the range of G's tanh
        noise = torch.randn(len(images), self.config.latent_dim, device=images.device)
        fake = self.generator(noise)

        # Generator: minimise the non-saturating -log D(G(z)).
        g_loss = generator_loss(self.discriminator(fake))
        self.optimize("generator", g_loss)

        # Discriminator: (-log D(x) - log(1 - D(G(z)))) / 2.
        d_loss = discriminator_loss(self.discriminator(real), self.discriminator(fake.detach())) / 2
        self.optimize("discriminator", d_loss)
        return {"g_loss": g_loss.item(), "d_loss": d_loss.item()}


# ---------------------------------------------------------------- train, sample, score


def build(model_class, image_set: ImageSet, device: torch.device):
    """`model_class` at the data's shape, on `device`; the torch RNG seeded from SEED first, so
    the initial weights and then the training noise are the same on every run."""
    _, channels, size, _ = image_set.images.shape
    config = model_class.Config(image_size=size, channels=channels, num_classes=0)
    torch.manual_seed(SEED)
    return model_class(config).to(device)


def fit(model, image_set: ImageSet, batch_size: int, steps: int) -> float:
    """`steps` calls of `model.train_step` over the training loop's `Batches` (seeded epochs,
    last partial batch dropped); returns the seconds taken. Raises on a NaN or Inf loss."""
    batches = Batches(image_set, batch_size, SEED, World(), model.device)
    model.train()
    started = time.perf_counter()
    for step in range(steps):
        images, labels = batches.get(step)
        losses = model.train_step(images, labels)
        if not all(math.isfinite(value) for value in losses.values()):
            raise RuntimeError(f"{model.config.family}: loss not finite at step {step}: {losses}")
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def score(name: str, images: np.ndarray, params_path: str) -> dict:
    """The evaluate stage's metrics of uint8 samples (N, C, H, W), as metrics/MODEL.json holds
    them: `stages.evaluate` run in this process (its printout kept back) on a temp .npy."""
    with tempfile.TemporaryDirectory(prefix="aigc-textbook-") as folder:
        samples, out = Path(folder) / "samples.npy", Path(folder) / "metrics.json"
        np.save(samples, images)
        arguments = ["--samples", str(samples), "--name", name, "--evaluator", str(EVALUATOR)]
        arguments += ["--reference", str(SPLITS / "test"), "--heldout", str(SPLITS / "val")]
        arguments += ["--train", str(SPLITS / "train"), "--out", str(out)]
        with contextlib.redirect_stdout(io.StringIO()):
            evaluate.main([*arguments, "--params", params_path])
        return read_json(out)


def textbook_row(name, model_class, image_set, batch_size, steps, samples, params_path) -> Row:
    """Build and train `model_class`, draw `samples` images with the sample stage's
    `generate` (seeded, eval mode), score them; the row's metrics with `train_seconds`."""
    model = build(model_class, image_set, resolve_device("auto"))
    seconds = fit(model, image_set, batch_size, steps)
    images, _, _ = generate(model.eval(), samples, SAMPLE_BATCH, SEED)
    return Row(name, {**score(name, images, params_path), "train_seconds": seconds})


def missing_inputs() -> list[str]:
    needed = [TRAIN, *(SPLITS / name for name in ("train", "val", "test"))]
    missing = [str(path) for path in needed if not (path / "images.npy").is_file()]
    return missing + ([str(EVALUATOR)] if not EVALUATOR.is_file() else [])


def main(argv: list[str] | None = None) -> list[Row] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae-epochs", type=int, default=10, help="epochs of the MLP VAE")
    parser.add_argument("--gan-steps", type=int, default=8000, help="steps of the MLP GAN")
    parser.add_argument("--samples", type=int, default=10_000, help="samples scored per model")
    parser.add_argument("--params", default="params.yaml", help="for `models` and `evaluate`")
    args = parser.parse_args(argv if argv is not None else [])
    missing = missing_inputs()
    if missing:
        print(f"textbook: no {', '.join(missing)}; run `make repro` first")
        return None

    image_set = load_image_set(TRAIN, mmap=False)  # into memory, as the train stage reads it
    vae_steps = args.vae_epochs * (len(image_set) // VAE_BATCH)
    print(
        f"{len(image_set)} training images {image_set.images.shape[1:]}; MLP VAE "
        f"{args.vae_epochs} epochs ({vae_steps} steps of {VAE_BATCH}), MLP GAN {args.gan_steps} "
        f"steps of {GAN_BATCH}; {args.samples} samples each"
    )
    scoring = (args.samples, args.params)
    rows = [
        textbook_row("textbook-vae", TextbookVAE, image_set, VAE_BATCH, vae_steps, *scoring),
        textbook_row("textbook-gan", TextbookGAN, image_set, GAN_BATCH, args.gan_steps, *scoring),
    ]
    rows = load_rows(METRICS, model_names(args.params), LOGS) + rows
    by_key = {column.key: column for column in COLUMNS}
    print(markdown_table(rows, [by_key[key] for key in TABLE_KEYS]))
    for row in rows:
        for note in row.notes:
            print(f"  {row.name}: {note}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
