"""Spectral low-pass projection onto the ``k`` lowest Laplacian modes, with exact gradients.

For every component with Laplacian ``L = U diag(λ) Uᵀ`` (λ ≥ 0) this computes

    P(L) S = U diag(w) Uᵀ S,   w_i = 1 / (1 + (λ_i/μ)^p) = σ(p·(ln μ − ln λ_i)),   Σ_i w_i = k.

``P`` is the projector onto the ``k`` smoothest modes with Fermi–Dirac occupations on a
logarithmic eigenvalue scale (equivalently an order-p Butterworth low-pass filter), and
``μ`` fixed by the "particle number" ``k``. The smearing ``τ = 1/p`` is relative: modes
within a factor ``e^{±τ}`` of ``μ`` share occupation, so the filter behaves the same for a
10-atom molecule (eigenvalues ~1) and a 10,000-atom one (lowest eigenvalues ≪ 1). Why:

* ``P`` is a matrix function of ``L``: it does not depend on eigenvector signs or on the
  basis chosen inside a degenerate eigenspace, so neither does anything built from it.
* A degenerate cluster that straddles mode ``k`` (benzene, C60) is never split: all its
  modes get the same occupation.
* ``μ`` is a smooth symmetric function of the spectrum, so ``P(L)`` is differentiable
  everywhere, also where eigenvalues cross. The zero mode (λ = 0) always has w = 1.

Autograd through ``torch.linalg.eigh`` divides by eigenvalue differences and returns
inf/NaN at degeneracies. Here the gradient w.r.t. ``L`` is assembled with the
Daleckii–Krein formula (divided differences of ``w``, replaced by the derivative for
near-equal eigenvalues) plus the term from the constraint on ``μ``. The backward pass is
itself differentiable w.r.t. ``S`` and the incoming gradient, which is what force
training needs (mixed derivatives ∂²E/∂x∂θ). Second derivatives w.r.t. positions through
the eigenvectors (Hessians) are not provided.

Components with at most ``k`` atoms keep all their modes (``P = I``).
"""
from __future__ import annotations

import numpy as np
import torch

DENSE_MAX = 1000
"""Components with more atoms use the sparse solver (``sparse.py``); smaller ones are packed
into one batched dense eigendecomposition."""


def symeig(L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched symmetric eigensolver [C, n, n] -> (λ [C, n] ascending, U [C, n, n]).

    Module-level so tests can substitute a solver that returns other (equally valid)
    eigenvector signs or degenerate-subspace bases.
    """
    return torch.linalg.eigh(L)


def _log_lambda(lam: torch.Tensor) -> torch.Tensor:
    return torch.log(lam.clamp_min(0.0))  # -inf for the zero mode(s): w = 1 exactly


def fermi_level(lam: torch.Tensor, valid: torch.Tensor, k: int, tau: float, tol: float = 1e-13) -> torch.Tensor:
    """ln μ per component with Σ_valid σ((ln μ − ln λ)/τ) = k. [C].

    Safeguarded Newton in float64 on the CPU: Newton steps on the monotone occupation count,
    kept inside a shrinking bracket (bisection when a step leaves it); typically 4–8 steps.
    """
    with np.errstate(divide="ignore"):
        loglam = np.log(np.clip(lam.detach().double().cpu().numpy(), 0.0, None))
    valid_np = valid.detach().cpu().numpy()
    finite = valid_np & np.isfinite(loglam)
    any_finite = finite.any(-1)
    lo = np.where(any_finite, np.where(finite, loglam, np.inf).min(-1), 0.0) - 60.0 * tau
    hi = np.where(any_finite, np.where(finite, loglam, -np.inf).max(-1), 0.0) + 60.0 * tau
    x = 0.5 * (lo + hi)
    # start between the k-th and (k+1)-th eigenvalue (ascending, padding last): where Σw = k
    # for vanishing smearing, so Newton needs only a few steps
    n_valid = valid_np.sum(-1)
    if loglam.shape[-1] > k >= 1:
        guess = 0.5 * (loglam[:, k - 1] + loglam[:, k])
        use = (n_valid > k) & np.isfinite(guess) & (guess > lo) & (guess < hi)
        x = np.where(use, guess, x)
    for _ in range(200):
        with np.errstate(all="ignore"):
            occ = 1.0 / (1.0 + np.exp(-(x[:, None] - loglam) / tau))
        occ = np.where(valid_np, occ, 0.0)
        f = occ.sum(-1) - k
        if np.all(np.abs(f) < tol * max(k, 1)):
            break
        lo = np.where(f < 0, x, lo)
        hi = np.where(f > 0, x, hi)
        slope = (occ * (1.0 - occ)).sum(-1) / tau
        with np.errstate(all="ignore"):
            newton = x - f / slope
        ok = np.isfinite(newton) & (newton > lo) & (newton < hi)
        x = np.where(ok, newton, 0.5 * (lo + hi))
    return torch.from_numpy(x).to(lam.device)


def occupations(lam: torch.Tensor, mask: torch.Tensor, k: int, tau: float):
    """Occupations and their derivatives for components ``[C, n]``.

    Returns w, v = ∂w/∂μ, a = −∂w/∂λ (all [C, n]), μ [C] and ``smeared`` [C] (components
    with more than k atoms; the others keep every mode with w = 1).
    """
    smeared = mask.sum(-1) > k
    log_mu = fermi_level(lam, mask, k, tau).to(lam.dtype)
    mu = log_mu.exp()
    t = _log_lambda(lam) - log_mu[:, None]  # ln(λ/μ)
    p = 1.0 / tau
    w_f = torch.sigmoid(-p * t)
    v_f = (p / mu[:, None]) * w_f * (1.0 - w_f)
    a_f = (p / mu[:, None]) * _exp_sigmoid_sq(t, p)
    keep = smeared[:, None] & mask
    w = torch.where(smeared[:, None], w_f, torch.ones_like(lam)) * mask
    v = torch.where(keep, v_f, torch.zeros_like(lam))
    a = torch.where(keep, a_f, torch.zeros_like(lam))
    return w, v, a, mu, smeared


def _exp_sigmoid_sq(t: torch.Tensor, p: float) -> torch.Tensor:
    """e^{(p−1)t} σ(−pt)² in log space: the product of an overflowing exponential and an
    underflowing sigmoid (far-above-μ modes, float32) would be inf·0 = NaN."""
    return torch.exp((p - 1.0) * t - 2.0 * torch.nn.functional.softplus(p * t))


def _derivative(lam: torch.Tensor, mu: torch.Tensor, tau: float) -> torch.Tensor:
    """∂w/∂λ at eigenvalues ``lam`` (any shape broadcastable with ``mu``)."""
    p = 1.0 / tau
    t = _log_lambda(lam) - torch.log(mu)
    return -(p / mu) * _exp_sigmoid_sq(t, p)


class _LowPass(torch.autograd.Function):
    @staticmethod
    def forward(ctx, L, S, mask, k, tau):
        with torch.no_grad():
            # Push padding modes above every real eigenvalue (Gershgorin bound) so the
            # first n_c modes of a block are its real ones.
            bound = L.abs().sum(-1).amax() * 2.0 + 1.0
            Lp = L + torch.diag_embed((~mask).to(L.dtype) * bound)
            lam, U = symeig(Lp)
            w, v, a, mu, smeared = occupations(lam, mask, k, tau)
            Y = U @ (w[..., None] * (U.transpose(-1, -2) @ S))
        ctx.save_for_backward(S, U, lam, w, v, a, mu, smeared, mask)
        ctx.tau = tau
        return Y

    @staticmethod
    def backward(ctx, gY):
        S, U, lam, w, v, a, mu, smeared, mask = ctx.saved_tensors
        tau = ctx.tau
        Ut = U.transpose(-1, -2)
        gS = U @ (w[..., None] * (Ut @ gY)) if ctx.needs_input_grad[1] else None
        gL = None
        if ctx.needs_input_grad[0]:
            G = 0.5 * (gY @ S.transpose(-1, -2) + S @ gY.transpose(-1, -2))
            Gt = Ut @ G @ U
            # Divided differences of w(λ) at fixed μ (Daleckii–Krein); the derivative at the
            # midpoint where eigenvalues are (nearly) equal.
            li, lj = lam[:, :, None], lam[:, None, :]
            dl = li - lj
            mid = 0.5 * (li + lj)
            scale = mid.abs() * tau + torch.finfo(lam.dtype).tiny
            near = dl.abs() < torch.finfo(lam.dtype).eps ** (1.0 / 3.0) * scale
            deriv = _derivative(mid, mu[:, None, None], tau) * smeared[:, None, None]
            dd = (w[:, :, None] - w[:, None, :]) / torch.where(near, torch.ones_like(dl), dl)
            pair = mask[:, :, None] & mask[:, None, :]
            inner = torch.where(near, deriv, dd) * pair * Gt
            # Constraint Σ w = k moves μ: dμ = Σ a_i dλ_i / Σ v_i.
            vsum = v.sum(-1).clamp_min(torch.finfo(v.dtype).tiny)
            c = (v * torch.diagonal(Gt, dim1=-2, dim2=-1)).sum(-1) / vsum
            inner = inner + torch.diag_embed(c[:, None] * a)
            gL = U @ inner @ Ut
        return gL, gS, None, None, None


def lowpass_project(L: torch.Tensor, S: torch.Tensor, mask: torch.Tensor, k: int, tau: float) -> torch.Tensor:
    """Apply the smeared projector onto the ``k`` lowest modes of each block.

    Args:
        L: [C, n, n] Laplacians (positive semi-definite), zero outside each real block.
        S: [C, n, ch] fields to project, zero on padding.
        mask: [C, n] bool, real atoms.
        k: number of modes. tau: relative smearing width (1/p of the Butterworth filter).
    Returns:
        [C, n, ch], zero on padding.
    """
    if L.shape[0] == 0:
        return S
    return _LowPass.apply(L, S, mask, int(k), float(tau))
