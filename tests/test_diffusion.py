"""The diffusion maths (aigc/diffusion.py) against direct computation and analytic toy models.

The closed forms of the schedule are checked against products and Bayes' rule computed step by
step in float64; the samplers run on 1-D toy data whose optimal eps-predictor is known exactly
(a Gaussian, and a two-point mixture), so their samples can be compared with the data and with
each other.
"""

from __future__ import annotations

import math

import pytest
import torch

from aigc.diffusion import (
    NoiseSchedule,
    betas_for,
    ddim_sample,
    ddim_timesteps,
    ddpm_sample,
    dpm_solver_sample,
    guided_output,
)

SCHEDULES = ["linear", "cosine"]


# -- the schedule's closed forms ------------------------------------------------------------------


@pytest.mark.parametrize("kind", SCHEDULES)
def test_alpha_bar_is_the_product_of_alphas(kind):
    schedule = NoiseSchedule(100, kind)
    betas = betas_for(kind, 100).tolist()
    product = 1.0
    for t, beta in enumerate(betas):
        product *= 1.0 - beta
        assert schedule.alphas_cumprod[t].item() == pytest.approx(product, rel=1e-5, abs=1e-9)
    assert all(0 < beta < 1 for beta in betas)
    assert schedule.alphas_cumprod_prev[0].item() == 1.0
    assert schedule.alphas_cumprod[-1].item() < 1e-3  # x_T is (almost) pure noise


def test_linear_betas_are_ho_et_al_at_t_1000():
    betas = betas_for("linear", 1000)
    assert betas[0].item() == pytest.approx(1e-4)
    assert betas[-1].item() == pytest.approx(0.02)


def test_cosine_alpha_bar_follows_nichol_and_dhariwal():
    """abar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) pi / 2), wherever beta is not
    clipped (every step but the last few)."""
    timesteps, offset = 200, 0.008
    schedule = NoiseSchedule(timesteps, "cosine")

    def f(t):
        return math.cos((t / timesteps + offset) / (1 + offset) * math.pi / 2) ** 2

    for t in range(timesteps - 5):  # index t stands for step t + 1
        expected = f(t + 1) / f(0)
        assert schedule.alphas_cumprod[t].item() == pytest.approx(expected, rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_posterior_matches_bayes_on_gaussians(kind):
    """q(x_{t-1} | x_t, x0) from Bayes' rule: prior q(x_{t-1} | x0) = N(sqrt(abar') x0, 1 - abar'),
    likelihood q(x_t | x_{t-1}) = N(sqrt(alpha) x_{t-1}, beta); the product of the two Gaussians in
    x_{t-1} has precision 1/(1 - abar') + alpha/beta."""
    timesteps = 50
    schedule = NoiseSchedule(timesteps, kind)
    betas = betas_for(kind, timesteps).tolist()
    x0 = torch.tensor([0.7, -0.3])
    xt = torch.tensor([-1.2, 0.4])
    abar_prev = 1.0
    for t, beta in enumerate(betas):
        alpha = 1.0 - beta
        steps = torch.full((2,), t, dtype=torch.long)
        mean, variance = schedule.q_posterior(x0, xt, steps)
        if t == 0:  # x_{-1} is x0 itself: a point mass
            assert torch.allclose(mean, x0, atol=1e-5)
            assert variance.abs().max().item() < 1e-12
        else:
            precision = 1.0 / (1.0 - abar_prev) + alpha / beta
            for i in range(2):
                weighted = math.sqrt(abar_prev) * x0[i].item() / (1.0 - abar_prev)
                weighted += math.sqrt(alpha) * xt[i].item() / beta
                assert mean[i].item() == pytest.approx(weighted / precision, rel=1e-4, abs=1e-5)
            assert variance[0].item() == pytest.approx(1.0 / precision, rel=1e-4)
        abar_prev *= alpha


@pytest.mark.parametrize("kind", SCHEDULES)
def test_q_sample_has_the_closed_form_marginal(kind):
    """Noising step by step with q(x_t | x_{t-1}) reaches the same distribution as q_sample."""
    timesteps, t = 40, 25
    schedule = NoiseSchedule(timesteps, kind)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000,), 0.5, dtype=torch.float64)
    x = x0.clone()
    for beta in betas_for(kind, timesteps)[: t + 1].tolist():
        x = math.sqrt(1 - beta) * x + math.sqrt(beta) * torch.randn(
            x.shape, generator=generator, dtype=torch.float64
        )
    steps = torch.full(x0.shape, t, dtype=torch.long)
    direct = schedule.q_sample(x0.float(), steps, torch.randn(x0.shape, generator=generator))
    assert x.mean().item() == pytest.approx(direct.mean().item(), abs=0.01)
    assert x.std().item() == pytest.approx(direct.std().item(), rel=0.01)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_the_target_gives_back_x0_and_eps(prediction):
    schedule = NoiseSchedule(100, "cosine", prediction)
    generator = torch.Generator().manual_seed(1)
    x0 = torch.rand(8, 1, 4, 4, generator=generator) * 2 - 1
    noise = torch.randn(8, 1, 4, 4, generator=generator)
    t = torch.arange(0, 100, 13)[:8]
    xt = schedule.q_sample(x0, t, noise)
    x0_back, eps_back = schedule.x0_and_eps(xt, t, schedule.target(x0, noise, t))
    assert torch.allclose(eps_back, noise, atol=1e-4)
    assert torch.allclose(x0_back, x0, atol=1e-3)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_min_snr_weights(prediction):
    """Hang et al. 2023 eq. 9: min(SNR, gamma) / SNR (eps) or / (SNR + 1) (v); 1 when off."""
    schedule = NoiseSchedule(100, "cosine", prediction)
    t = torch.arange(100)
    assert torch.equal(schedule.loss_weights(t, 0.0), torch.ones(100))
    weights = schedule.loss_weights(t, 5.0)
    for step in range(100):
        abar = 1.0
        for beta in betas_for("cosine", 100)[: step + 1].tolist():
            abar *= 1 - beta
        snr = abar / (1 - abar)
        expected = min(snr, 5.0) / (snr if prediction == "eps" else snr + 1)
        assert weights[step].item() == pytest.approx(expected, rel=1e-4)
    assert weights.max().item() <= 1.0 + 1e-6


def test_ddim_timesteps():
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    assert ddim_timesteps(1000, 25)[0] == 999 and ddim_timesteps(1000, 25)[-1] == 0
    assert len(ddim_timesteps(1000, 25)) == 25
    with pytest.raises(ValueError, match="1..10"):
        ddim_timesteps(10, 11)


# -- the samplers on toy data with an exact eps-predictor -----------------------------------------


def gaussian_denoiser(schedule, mean, std):
    """The optimal eps-predictor for data N(mean, std^2): E[eps | x_t] in closed form, since
    x_t ~ N(sqrt(abar) mean, abar std^2 + 1 - abar) and eps, x_t are jointly Gaussian."""

    def denoise(xt, t):
        abar = schedule.alphas_cumprod[t].reshape(-1, *[1] * (xt.dim() - 1)).double()
        variance = abar * std**2 + 1 - abar
        return (1 - abar).sqrt() * (xt.double() - abar.sqrt() * mean) / variance

    return denoise


def two_point_denoiser(schedule):
    """The optimal eps-predictor for data +-1 with equal weights: E[x0 | x_t] =
    tanh(sqrt(abar) x_t / (1 - abar)), eps = (x_t - sqrt(abar) E[x0 | x_t]) / sqrt(1 - abar)."""

    def denoise(xt, t):
        abar = schedule.alphas_cumprod[t].reshape(-1, *[1] * (xt.dim() - 1)).double()
        x0 = torch.tanh(abar.sqrt() * xt.double() / (1 - abar))
        return (xt.double() - abar.sqrt() * x0) / (1 - abar).sqrt()

    return denoise


@pytest.mark.parametrize("kind", SCHEDULES)
def test_ddim_with_all_steps_and_eta_1_matches_ddpm_and_the_data(kind):
    timesteps, count, mean, std = 500, 20_000, 0.3, 0.5
    schedule = NoiseSchedule(timesteps, kind)
    denoise = gaussian_denoiser(schedule, mean, std)
    shape = (count, 1)
    ddpm = ddpm_sample(schedule, denoise, shape, torch.Generator().manual_seed(0), clip=False)
    ddim = ddim_sample(
        schedule, denoise, shape, timesteps, 1.0, torch.Generator().manual_seed(1), clip=False
    )
    for samples in (ddpm, ddim):  # both reach the data distribution N(0.3, 0.5^2)
        assert samples.mean().item() == pytest.approx(mean, abs=0.02)
        assert samples.std().item() == pytest.approx(std, rel=0.05)
    assert ddim.mean().item() == pytest.approx(ddpm.mean().item(), abs=0.02)
    assert ddim.var().item() == pytest.approx(ddpm.var().item(), rel=0.05)
    # With the same noise they are the same chain: DDIM eq. 16 at eta = 1 is DDPM's beta~_t.
    same = ddim_sample(
        schedule, denoise, shape, timesteps, 1.0, torch.Generator().manual_seed(0), clip=False
    )
    assert torch.allclose(same, ddpm, atol=1e-3)


def test_samplers_recover_a_two_point_mixture():
    timesteps, count = 200, 20_000
    schedule = NoiseSchedule(timesteps, "linear")
    denoise = two_point_denoiser(schedule)
    shape = (count, 1)
    ddpm = ddpm_sample(schedule, denoise, shape, torch.Generator().manual_seed(2), clip=False)
    ddim = ddim_sample(
        schedule, denoise, shape, timesteps, 1.0, torch.Generator().manual_seed(3), clip=False
    )
    ddim_deterministic = ddim_sample(
        schedule, denoise, shape, 50, 0.0, torch.Generator().manual_seed(4), clip=False
    )
    for samples in (ddpm, ddim, ddim_deterministic):
        assert (samples.abs() - 1).abs().quantile(0.95).item() < 0.1  # near +-1
        assert (samples > 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    # A data distribution the samplers must not hit by accident: the wrong denoiser fails.
    wrong = ddpm_sample(
        schedule, gaussian_denoiser(schedule, 0.0, 1.0), shape, torch.Generator(), clip=False
    )
    assert (wrong.abs() - 1).abs().quantile(0.95).item() > 0.5


@pytest.mark.parametrize("kind", SCHEDULES)
def test_dpm_solver_follows_the_probability_flow_closer_than_ddim(kind):
    """On data N(m, s^2) the probability-flow ODE has a closed form: with y = x_t / sqrt(abar)
    and k^2 = (1 - abar) / abar, (y - m) / sqrt(s^2 + k^2) stays constant, so x_T maps to
    x0 = m + s (y_T - m) / sqrt(s^2 + k_T^2). From the same x_T, DPM-Solver++(2M) lands far
    nearer it than DDIM at the same number of steps (second order against first), and its
    samples have the data's mean and spread."""
    timesteps, count, mean, std = 1000, 4000, 0.3, 0.5
    schedule = NoiseSchedule(timesteps, kind)
    denoise = gaussian_denoiser(schedule, mean, std)
    start = torch.randn(count, 1, generator=torch.Generator().manual_seed(0))
    abar = schedule.alphas_cumprod[-1].double()
    y = start.double() / abar.sqrt()
    exact = mean + std * (y - mean) / (std**2 + (1 - abar) / abar).sqrt()

    def error(samples):
        return (samples.double() - exact).abs().mean().item()

    for steps in (25, 50):
        ddim = ddim_sample(schedule, denoise, (count, 1), steps, 0.0, clip=False, start=start)
        solver = dpm_solver_sample(schedule, denoise, (count, 1), steps, clip=False, start=start)
        assert error(solver) < error(ddim) / 3
        assert solver.mean().item() == pytest.approx(mean, abs=0.03)
        assert solver.std().item() == pytest.approx(std, rel=0.05)
    # At one and two steps no earlier prediction exists to extrapolate from: it is DDIM.
    for steps in (1, 2):
        ddim = ddim_sample(schedule, denoise, (count, 1), steps, 0.0, clip=False, start=start)
        solver = dpm_solver_sample(schedule, denoise, (count, 1), steps, clip=False, start=start)
        assert torch.allclose(solver, ddim, atol=1e-6)


def test_clipping_keeps_x0_in_the_data_range():
    schedule = NoiseSchedule(50, "cosine")
    wild = lambda xt, t: -10 * xt  # noqa: E731 - an eps that implies |x0| >> 1
    samples = ddim_sample(schedule, wild, (64, 1), 5, 0.0, torch.Generator().manual_seed(0))
    assert samples.abs().max().item() <= 1.0 + 1e-5


# -- classifier-free guidance ---------------------------------------------------------------------


def test_guidance_scale_0_is_unconditional_and_1_conditional():
    def predict(xt, t, labels):  # conditional and unconditional outputs differ
        return torch.sin(xt * (labels.float()[:, None] + 1.5)) + 0.01 * t.float()[:, None]

    generator = torch.Generator().manual_seed(0)
    xt = torch.randn(6, 3, generator=generator)
    t = torch.arange(6)
    labels, null = torch.tensor([0, 1, 2, 0, 1, 2]), torch.full((6,), 3)
    conditional, unconditional = predict(xt, t, labels), predict(xt, t, null)
    assert not torch.allclose(conditional, unconditional)
    assert torch.equal(guided_output(predict, xt, t, labels, null, 0.0), unconditional)
    assert torch.equal(guided_output(predict, xt, t, labels, null, 1.0), conditional)
    guided = guided_output(predict, xt, t, labels, null, 3.0)
    assert torch.allclose(guided, unconditional + 3.0 * (conditional - unconditional), atol=1e-6)


def test_v_prediction_is_the_rotation_of_salimans_and_ho():
    """Salimans & Ho 2022, section 4: with alpha = cos(phi), sigma = sin(phi) taken from abar
    computed here independently, x_t = cos(phi) x0 + sin(phi) eps and v = cos(phi) eps -
    sin(phi) x0: a rotation of (x0, eps), so it keeps their norm, and x0 = cos(phi) x_t -
    sin(phi) v for any v the network outputs. Covers every step, the last included."""
    steps = 100
    schedule = NoiseSchedule(steps, "cosine", "v")
    generator = torch.Generator().manual_seed(5)
    t = torch.tensor([0, 1, 30, 60, 98, 99])
    x0 = torch.rand(len(t), 1, 4, 4, generator=generator) * 2 - 1
    noise = torch.randn(len(t), 1, 4, 4, generator=generator)
    abar = torch.cumprod(1 - betas_for("cosine", steps).double(), 0)[t]
    phi = torch.atan2((1 - abar).sqrt(), abar.sqrt()).float()[:, None, None, None]
    xt = schedule.q_sample(x0, t, noise)
    v = schedule.target(x0, noise, t)
    torch.testing.assert_close(xt, phi.cos() * x0 + phi.sin() * noise, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(v, phi.cos() * noise - phi.sin() * x0, atol=1e-5, rtol=1e-5)
    norms = (xt.pow(2) + v.pow(2)).flatten(1).sum(1), (x0.pow(2) + noise.pow(2)).flatten(1).sum(1)
    torch.testing.assert_close(*norms, atol=1e-4, rtol=1e-5)
    output = torch.randn(xt.shape, generator=generator)  # any network output
    x0_implied, eps_implied = schedule.x0_and_eps(xt, t, output)
    torch.testing.assert_close(x0_implied, phi.cos() * xt - phi.sin() * output, atol=1e-5, rtol=0)
    torch.testing.assert_close(eps_implied, phi.sin() * xt + phi.cos() * output, atol=1e-5, rtol=0)
