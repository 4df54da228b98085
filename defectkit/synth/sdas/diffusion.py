"""Gaussian diffusion with learned variance (IDDPM, Nichol & Dhariwal 2021).

Why these pieces: RealNet's SDAS needs a model variance Sigma_theta to inflate,
``x_{t-1} ~ N(mu, (1+s) Sigma)``; IDDPM learns Sigma (hybrid loss
``L_simple + 0.001 L_vlb``) and samples well with few, respaced steps.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def beta_schedule(name: str, num_timesteps: int) -> np.ndarray:
    """Betas for the "cosine" (IDDPM) or "linear" (DDPM, scaled to T) schedule."""
    if name == "linear":
        scale = 1000.0 / num_timesteps
        return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)
    if name == "cosine":

        def abar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        return np.array(
            [min(1 - abar((i + 1) / num_timesteps) / abar(i / num_timesteps), 0.999) for i in range(num_timesteps)],
            dtype=np.float64,
        )
    raise ValueError(f"unknown beta schedule {name!r} (use 'cosine' or 'linear')")


def _normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_std_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _discretized_gaussian_log_likelihood(x, means, log_scales):
    """log p(x) of 8-bit data in [-1, 1] under a discretised Gaussian (the L_0 decoder term)."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = _approx_std_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = _approx_std_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


def _mean_flat(x):
    return x.mean(dim=list(range(1, x.ndim)))


class GaussianDiffusion:
    """Diffusion over a subset of timesteps of a base schedule.

    ``timesteps`` (sorted indices into the base schedule) makes it a *respaced*
    process: betas are recomputed from the kept cumulative alphas and the model is
    still called with the original timestep indices.
    """

    def __init__(self, betas: np.ndarray, timesteps=None):
        base_abar = np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))
        self.timestep_map = np.arange(len(base_abar)) if timesteps is None else np.asarray(sorted(timesteps))
        abar = base_abar[self.timestep_map]
        prev = np.append(1.0, abar[:-1])
        self.betas = 1.0 - abar / prev
        self.num_timesteps = len(self.betas)
        self.alphas_cumprod = abar
        self.alphas_cumprod_prev = prev
        self.sqrt_alphas_cumprod = np.sqrt(abar)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - abar)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / abar)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / abar - 1)
        self.posterior_variance = self.betas * (1.0 - prev) / (1.0 - abar)
        # beta~_0 is 0: clip its log with beta~_1, as IDDPM does
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1:2], self.posterior_variance[1:])
        )
        self.posterior_mean_coef1 = self.betas * np.sqrt(prev) / (1.0 - abar)
        self.posterior_mean_coef2 = (1.0 - prev) * np.sqrt(1.0 - self.betas) / (1.0 - abar)

    @classmethod
    def create(cls, schedule: str = "cosine", num_timesteps: int = 1000, sampling_steps=None) -> "GaussianDiffusion":
        """Base process, or one respaced to ``sampling_steps`` evenly spaced steps."""
        betas = beta_schedule(schedule, num_timesteps)
        if sampling_steps is None or sampling_steps >= num_timesteps:
            return cls(betas)
        steps = np.unique(np.round(np.linspace(0, num_timesteps - 1, sampling_steps)).astype(int))
        return cls(betas, steps)

    @staticmethod
    def _get(arr: np.ndarray, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = torch.as_tensor(arr, dtype=torch.float32, device=x.device)[t]
        return out.reshape(-1, *([1] * (x.ndim - 1)))

    # -- forward process -------------------------------------------------
    def q_sample(self, x0, t, noise):
        return (
            self._get(self.sqrt_alphas_cumprod, t, x0) * x0
            + self._get(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def q_posterior(self, x0, xt, t):
        mean = self._get(self.posterior_mean_coef1, t, xt) * x0 + self._get(self.posterior_mean_coef2, t, xt) * xt
        return mean, self._get(self.posterior_log_variance_clipped, t, xt)

    # -- model -----------------------------------------------------------
    def p_mean_variance(self, model, xt, t, clip_denoised: bool = True, model_output=None):
        """Model mean and learned log variance of p(x_{t-1} | x_t)."""
        if model_output is None:
            model_output = model(xt, torch.as_tensor(self.timestep_map, device=xt.device)[t])
        eps, v = model_output.chunk(2, dim=1)
        min_log = self._get(self.posterior_log_variance_clipped, t, xt)
        max_log = self._get(np.log(self.betas), t, xt)
        frac = (v + 1) / 2  # v in [-1, 1] interpolates log beta~ .. log beta
        log_var = frac * max_log + (1 - frac) * min_log
        x0 = (
            self._get(self.sqrt_recip_alphas_cumprod, t, xt) * xt
            - self._get(self.sqrt_recipm1_alphas_cumprod, t, xt) * eps
        )
        if clip_denoised:
            x0 = x0.clamp(-1, 1)
        mean, _ = self.q_posterior(x0, xt, t)
        return mean, log_var, x0

    # -- training --------------------------------------------------------
    def training_losses(self, model, x0, t, noise):
        """Per-sample hybrid loss L_simple + (T/1000) L_t: the one-sample estimate of
        L_simple + 0.001 L_vlb, with gradients of L_vlb reaching only the variance."""
        xt = self.q_sample(x0, t, noise)
        out = model(xt, torch.as_tensor(self.timestep_map, device=x0.device)[t])
        eps, v = out.chunk(2, dim=1)
        mse = _mean_flat((noise - eps) ** 2)
        frozen = torch.cat([eps.detach(), v], dim=1)  # stop-grad on the mean (IDDPM)
        mean, log_var, _ = self.p_mean_variance(model, xt, t, clip_denoised=False, model_output=frozen)
        true_mean, true_log_var = self.q_posterior(x0, xt, t)
        kl = _mean_flat(_normal_kl(true_mean, true_log_var, mean, log_var)) / math.log(2.0)
        nll = -_mean_flat(_discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var)) / math.log(2.0)
        vb = torch.where(t == 0, nll, kl)
        return {"loss": mse + vb * self.num_timesteps / 1000.0, "mse": mse, "vb": vb}

    # -- sampling --------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        model,
        shape,
        strength=0.0,
        generator: torch.Generator | None = None,
        clip_denoised: bool = True,
        progress: bool = False,
    ) -> torch.Tensor:
        """SDAS sampler: x_{t-1} ~ N(mu, (1+s) Sigma_theta); s = 0 is ordinary IDDPM sampling.

        ``strength`` is a scalar or a per-sample tensor of shape (B,). Returns x_0 in [-1, 1].
        """
        device = next(model.parameters()).device
        s = torch.as_tensor(strength, dtype=torch.float32, device=device).reshape(-1, 1, 1, 1)
        x = torch.randn(shape, generator=generator).to(device)  # CPU draws: same samples on any device
        from ...utils.progress import progress as progress_bar

        with progress_bar(
            range(self.num_timesteps - 1, -1, -1), desc="SDAS sampling", unit="step", enabled=progress
        ) as steps:
            for i in steps:
                t = torch.full((shape[0],), i, dtype=torch.long, device=device)
                mean, log_var, _ = self.p_mean_variance(model, x, t, clip_denoised=clip_denoised)
                if i > 0:
                    z = torch.randn(shape, generator=generator).to(device)
                    x = mean + torch.sqrt((1.0 + s) * torch.exp(log_var)) * z
                else:
                    x = mean
        return x.clamp(-1, 1)
