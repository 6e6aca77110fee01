"""The maths of denoising diffusion, apart from the network: the noise schedule and the samplers.

Notation (Ho et al. 2020, https://arxiv.org/abs/2006.11239): a clean image x0 in [-1, 1] is
noised over T steps, q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I), so that
q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I) with alpha_t = 1 - beta_t and
abar_t = prod_{s <= t} alpha_s. Here t is a 0-based index: t = 0 .. T-1 stands for the paper's
steps 1 .. T, and abar_{-1} = 1 (clean data).

- `NoiseSchedule`: the betas (linear, Ho et al.; cosine, Nichol & Dhariwal 2021,
  https://arxiv.org/abs/2102.09672), abar_t, `q_sample`, the posterior q(x_{t-1} | x_t, x0),
  and the conversions between a network output (eps or v, Salimans & Ho 2022,
  https://arxiv.org/abs/2202.00512) and the pair (x0, eps).
- `ddpm_sample`: ancestral sampling over all T steps (Ho et al. 2020, algorithm 2).
- `ddim_sample`: DDIM over a subsequence of steps with stochasticity eta (Song et al. 2021,
  https://arxiv.org/abs/2010.02502, eq. 12 and 16); eta = 1 over all T steps is DDPM.
- `dpm_solver_sample`: DPM-Solver++(2M), a second-order multistep solver of the same
  probability-flow ODE that deterministic DDIM solves to first order (Lu et al. 2022,
  https://arxiv.org/abs/2211.01095, algorithm 2): closer to the ODE's solution at the same
  number of network evaluations.
- `guided_output`: classifier-free guidance (Ho & Salimans 2022, https://arxiv.org/abs/2207.12598).

A denoiser is any callable `(x_t (B, ...), t (B,) int64) -> output (B, ...)`, the network's
prediction of eps or v, so the samplers work as well for a U-Net as for an analytic toy model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "SCHEDULES",
    "PREDICTIONS",
    "SAMPLERS",
    "Denoiser",
    "betas_for",
    "NoiseSchedule",
    "ddim_timesteps",
    "ddpm_sample",
    "ddim_sample",
    "dpm_solver_sample",
    "guided_output",
]

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "v")
SAMPLERS = ("ddim", "ddpm", "dpmpp_2m")

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

COSINE_OFFSET = 0.008  # s in Nichol & Dhariwal eq. 17: keeps beta_1 from being vanishingly small
MAX_BETA = 0.999  # Nichol & Dhariwal clip beta_t here to avoid a singularity at t = T


def betas_for(kind: str, timesteps: int) -> torch.Tensor:
    """The T betas of schedule `kind`, float64 (T,)."""
    if kind == "linear":
        # Ho et al. 2020 section 4: beta from 1e-4 to 0.02 over T = 1000; scaled by 1000 / T so
        # another T covers the same noise range (as in Nichol & Dhariwal's code).
        scale = 1000 / timesteps
        return torch.linspace(1e-4 * scale, 0.02 * scale, timesteps, dtype=torch.float64)
    if kind == "cosine":
        # Nichol & Dhariwal 2021 eq. 17: abar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s)/(1 + s))
        # pi/2); beta_t = 1 - abar(t) / abar(t-1), clipped at 0.999.
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((steps + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=MAX_BETA)
    raise ValueError(f"unknown noise schedule {kind!r}; allowed: {', '.join(SCHEDULES)}")


class NoiseSchedule(nn.Module):
    """The fixed forward process and its closed forms; an nn.Module only so `.to()` moves it.

    Every table is computed in float64 and kept as a float32 buffer of length T, indexed by the
    0-based step t; the buffers are not persistent (they follow from the config, so checkpoints
    do not carry them).
    """

    def __init__(self, timesteps: int, kind: str = "cosine", prediction: str = "eps") -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(
                f"unknown prediction {prediction!r}; allowed: {', '.join(PREDICTIONS)}"
            )
        self.timesteps = timesteps
        self.kind = kind
        self.prediction = prediction
        betas = betas_for(kind, timesteps)
        alphas = 1 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)  # abar_t
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        # Posterior q(x_{t-1} | x_t, x0) = N(coef_x0 x0 + coef_xt x_t, variance) (Ho et al. eq. 7),
        # variance = beta_t (1 - abar_{t-1}) / (1 - abar_t); it is 0 at t = 0.
        variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
        tables = {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "posterior_variance": variance,
            "posterior_coef_x0": betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod),
            "posterior_coef_xt": (1 - alphas_cumprod_prev) * alphas.sqrt() / (1 - alphas_cumprod),
        }
        for name, table in tables.items():
            self.register_buffer(name, table.float(), persistent=False)

    def _at(self, table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """table[t] (B,) shaped to broadcast against `like` (B, ...)."""
        return table[t].reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)

    # -- the forward process ----------------------------------------------------------------

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, a draw of q(x_t | x0) (Ho et al. eq. 4)."""
        abar = self._at(self.alphas_cumprod, t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def q_posterior(
        self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, ...) and variance (B, 1, ...) of q(x_{t-1} | x_t, x0) (Ho et al. eq. 7)."""
        mean = (
            self._at(self.posterior_coef_x0, t, xt) * x0
            + self._at(self.posterior_coef_xt, t, xt) * xt
        )
        return mean, self._at(self.posterior_variance, t, xt)

    # -- what the network predicts -------------------------------------------------------------

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The regression target of the network: eps, or v = sqrt(abar) eps - sqrt(1-abar) x0
        (Salimans & Ho 2022, section 4)."""
        if self.prediction == "eps":
            return noise
        abar = self._at(self.alphas_cumprod, t, x0)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def loss_weights(self, t: torch.Tensor, min_snr_gamma: float) -> torch.Tensor:
        """Per-step loss weights (B,) of Min-SNR-gamma (Hang et al. 2023,
        https://arxiv.org/abs/2303.09556, eq. 9): min(SNR, gamma) / SNR for eps and
        min(SNR, gamma) / (SNR + 1) for v, SNR = abar / (1 - abar). They cap the weight of the
        nearly clean steps, which converges faster; gamma = 0 gives 1 (Ho et al.'s simple loss)."""
        if min_snr_gamma <= 0:
            return torch.ones_like(t, dtype=torch.float32)
        abar = self.alphas_cumprod[t].double()
        snr = abar / (1 - abar)
        denominator = snr if self.prediction == "eps" else snr + 1
        return (snr.clamp(max=min_snr_gamma) / denominator).float()

    def x0_and_eps(
        self, xt: torch.Tensor, t: torch.Tensor, output: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, eps) implied by the network's `output` at x_t.

        eps-prediction: x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) (Ho et al. eq. 4 inverted).
        v-prediction: x0 = sqrt(abar) x_t - sqrt(1 - abar) v and
        eps = sqrt(1 - abar) x_t + sqrt(abar) v (Salimans & Ho 2022, appendix D).
        """
        abar = self._at(self.alphas_cumprod, t, xt)
        if self.prediction == "eps":
            return (xt - (1 - abar).sqrt() * output) / abar.sqrt(), output
        x0 = abar.sqrt() * xt - (1 - abar).sqrt() * output
        eps = (1 - abar).sqrt() * xt + abar.sqrt() * output
        return x0, eps

    def eps_from_x0(self, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar): the noise that takes x0 to x_t."""
        abar = self._at(self.alphas_cumprod, t, xt)
        return (xt - abar.sqrt() * x0) / (1 - abar).sqrt()

    def predict(
        self, denoiser: Denoiser, xt: torch.Tensor, t: torch.Tensor, clip: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, eps) from the denoiser; with `clip`, x0 is clipped to [-1, 1] (the data range)
        and eps recomputed from it so the two stay consistent."""
        x0, eps = self.x0_and_eps(xt, t, denoiser(xt, t).to(xt.dtype))
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = self.eps_from_x0(xt, t, x0)
        return x0, eps


# ---------------------------------------------------------------------------------------------
# Samplers. Both start from x_{T-1} ~ N(0, I) (abar_{T-1} is ~0 for both schedules) and return
# x0 samples.


def ddpm_sample(
    schedule: NoiseSchedule,
    denoiser: Denoiser,
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    clip: bool = True,
) -> torch.Tensor:
    """Ancestral sampling over all T steps (Ho et al. 2020, algorithm 2), with the posterior
    variance beta~_t (their sigma_t^2 = beta~_t choice): x_{t-1} ~ q(x_{t-1} | x_t, x0_hat)."""
    x = _noise(shape, generator, device)
    for step in reversed(range(schedule.timesteps)):
        t = torch.full((shape[0],), step, dtype=torch.long, device=x.device)
        x0, _ = schedule.predict(denoiser, x, t, clip)
        mean, variance = schedule.q_posterior(x0, x, t)
        x = mean + variance.sqrt() * _noise(shape, generator, device) if step > 0 else mean
    return x


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """`steps` evenly spaced steps from T-1 down to 0 (all of them when steps == T)."""
    if not 1 <= steps <= timesteps:
        raise ValueError(f"sampling steps must be in 1..{timesteps}, got {steps}")
    if steps == 1:
        return [timesteps - 1]
    return sorted({round(i * (timesteps - 1) / (steps - 1)) for i in range(steps)}, reverse=True)


def ddim_sample(
    schedule: NoiseSchedule,
    denoiser: Denoiser,
    shape: tuple[int, ...],
    steps: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    clip: bool = True,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) over `steps` of the T steps:

        x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z,
        sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)   (eq. 16).

    eta = 0 is deterministic; eta = 1 with steps == T is DDPM with variance beta~_t. `start`
    is x_T when given (else drawn from `generator`): with eta = 0 the sampler is then a fixed
    map from noise to image, which latent interpolation walks along.
    """
    x = _noise(shape, generator, device) if start is None else start.to(device)
    sequence = ddim_timesteps(schedule.timesteps, steps)
    for index, step in enumerate(sequence):
        t = torch.full((shape[0],), step, dtype=torch.long, device=x.device)
        x0, eps = schedule.predict(denoiser, x, t, clip)
        abar = schedule.alphas_cumprod[step].double()
        previous = sequence[index + 1] if index + 1 < len(sequence) else None
        abar_prev = schedule.alphas_cumprod[previous].double() if previous is not None else 1.0
        abar_prev = torch.as_tensor(abar_prev, dtype=torch.float64)
        sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).clamp(min=0).sqrt()
        direction = (1 - abar_prev - sigma**2).clamp(min=0).sqrt()
        x = abar_prev.sqrt().float() * x0 + direction.float() * eps
        if previous is not None and eta > 0:
            x = x + sigma.float() * _noise(shape, generator, device)
    return x


def dpm_solver_sample(
    schedule: NoiseSchedule,
    denoiser: Denoiser,
    shape: tuple[int, ...],
    steps: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    clip: bool = True,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, algorithm 2) over the same `steps` as `ddim_sample`.

    With alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t) and the half log-SNR
    lambda_t = log(alpha_t / sigma_t), one step from t to the next step s, h = lambda_s - lambda_t,
    is exact for the ODE when the data prediction x0_hat is constant over it:

        x_s = (sigma_s / sigma_t) x_t - alpha_s (exp(-h) - 1) D.

    D = x0_hat(x_t) is the first-order step (it is deterministic DDIM); from the second step on
    D = (1 + 1/(2r)) x0_hat(x_t) - 1/(2r) x0_hat(x_prev), r = h_prev / h, extrapolates x0_hat
    linearly in lambda from the previous step's prediction, at no extra network evaluation. The
    step into t = 0 stays first order (Lu et al.'s lower-order final step): on evenly spaced
    steps it is by far the longest in lambda, and extrapolating over it overshoots. The last
    step, from t = 0 to clean data (lambda = inf), returns x0_hat as DDIM does. Clipping x0_hat
    (`clip`) is the data-prediction solver's thresholding. `start` is x_T, as for DDIM.
    """
    x = _noise(shape, generator, device) if start is None else start.to(device)
    sequence = ddim_timesteps(schedule.timesteps, steps)
    abar = schedule.alphas_cumprod.double()
    previous_x0, previous_h = None, None
    for index, step in enumerate(sequence):
        t = torch.full((shape[0],), step, dtype=torch.long, device=x.device)
        x0, _ = schedule.predict(denoiser, x, t, clip)
        if index + 1 == len(sequence):
            return x0
        following = sequence[index + 1]
        alpha_t, sigma_t = abar[step].sqrt(), (1 - abar[step]).sqrt()
        alpha_s, sigma_s = abar[following].sqrt(), (1 - abar[following]).sqrt()
        h = (alpha_s / sigma_s).log() - (alpha_t / sigma_t).log()
        data = x0
        if previous_x0 is not None and following != sequence[-1]:
            half_inverse_r = (h / previous_h / 2).float()
            data = (1 + half_inverse_r) * x0 - half_inverse_r * previous_x0
        x = (sigma_s / sigma_t).float() * x - (alpha_s * torch.expm1(-h)).float() * data
        previous_x0, previous_h = x0, h
    return x


def guided_output(
    predict: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    xt: torch.Tensor,
    t: torch.Tensor,
    labels: torch.Tensor,
    null_labels: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6 in the eps form):
    out = out(x, null) + s (out(x, y) - out(x, null)).

    s = 0 is the unconditional model and s = 1 the conditional one; both are returned exactly
    (one forward pass, not the formula). Otherwise the two passes run as one batch. The formula is
    linear in the output, so it means the same for eps and for v.
    """
    if scale == 0:
        return predict(xt, t, null_labels)
    if scale == 1:
        return predict(xt, t, labels)
    both = predict(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([labels, null_labels]))
    conditional, unconditional = both.chunk(2)
    return unconditional + scale * (conditional - unconditional)


def _noise(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str
) -> torch.Tensor:
    """N(0, I) drawn on the generator's device (so a CPU generator gives the same noise for a
    model on any device), then moved to `device`."""
    source = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=source).to(device)
