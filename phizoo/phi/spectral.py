"""Spectral low-pass projection onto the ``k`` lowest Laplacian modes, with exact gradients.

For every component with Laplacian ``L = U diag(λ) Uᵀ`` this computes

    P(L) S = U diag(w) Uᵀ S,   w_i = σ((μ - λ_i) / τ),   μ such that Σ_i w_i = k.

``P`` is the projector onto the ``k`` smoothest modes, with Fermi–Dirac occupations of
width ``τ`` at the boundary (the fixed-"particle-number" smearing of electronic-structure
codes). Why this form:

* ``P`` is a matrix function of ``L``: it does not depend on eigenvector signs or on the
  basis chosen inside a degenerate eigenspace, so neither does anything built from it.
* A degenerate cluster that straddles mode ``k`` (benzene, C60) is never split: all its
  modes get the same occupation.
* ``μ`` is a smooth symmetric function of the spectrum, so ``P(L)`` is differentiable
  everywhere, also where eigenvalues cross.

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

import torch


def symeig(L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched symmetric eigensolver [C, n, n] -> (λ [C, n] ascending, U [C, n, n]).

    Module-level so tests can substitute a solver that returns other (equally valid)
    eigenvector signs or degenerate-subspace bases.
    """
    return torch.linalg.eigh(L)


def fermi_level(lam: torch.Tensor, valid: torch.Tensor, k: int, tau: float, iters: int = 80) -> torch.Tensor:
    """μ per component with Σ_valid σ((μ - λ)/τ) = k, by bisection in float64. [C]."""
    lam = lam.detach().double()
    big = torch.finfo(torch.float64).max
    lo = torch.where(valid, lam, torch.full_like(lam, big)).amin(-1) - 40.0 * tau
    hi = torch.where(valid, lam, torch.full_like(lam, -big)).amax(-1) + 40.0 * tau
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        occ = (torch.sigmoid((mid[:, None] - lam) / tau) * valid).sum(-1)
        too_many = occ > k
        hi = torch.where(too_many, mid, hi)
        lo = torch.where(too_many, lo, mid)
    return 0.5 * (lo + hi)


def occupations(lam: torch.Tensor, mask: torch.Tensor, k: int, tau: float):
    """Occupations w [C, n], ∂w/∂μ = v [C, n], μ [C], and which components are smeared [C]."""
    sizes = mask.sum(-1)
    smeared = sizes > k
    mu = fermi_level(lam, mask, k, tau).to(lam.dtype)
    w_f = torch.sigmoid((mu[:, None] - lam) / tau)
    w = torch.where(smeared[:, None], w_f, torch.ones_like(lam)) * mask
    v = torch.where(smeared[:, None], w_f * (1.0 - w_f) / tau, torch.zeros_like(lam)) * mask
    return w, v, mu, smeared


class _LowPass(torch.autograd.Function):
    @staticmethod
    def forward(ctx, L, S, mask, k, tau):
        with torch.no_grad():
            # Push padding modes above every real eigenvalue (Gershgorin bound) so the
            # first n_c modes of a block are its real ones.
            bound = (L.abs().sum(-1)).amax() * 2.0 + 1.0
            Lp = L + torch.diag_embed((~mask).to(L.dtype) * bound)
            lam, U = symeig(Lp)
            w, v, mu, smeared = occupations(lam, mask, k, tau)
            Y = U @ (w[..., None] * (U.transpose(-1, -2) @ S))
        ctx.save_for_backward(S, U, lam, w, v, mu, smeared, mask)
        ctx.tau = tau
        return Y

    @staticmethod
    def backward(ctx, gY):
        S, U, lam, w, v, mu, smeared, mask = ctx.saved_tensors
        tau = ctx.tau
        Ut = U.transpose(-1, -2)
        gS = U @ (w[..., None] * (Ut @ gY)) if ctx.needs_input_grad[1] else None
        gL = None
        if ctx.needs_input_grad[0]:
            G = 0.5 * (gY @ S.transpose(-1, -2) + S @ gY.transpose(-1, -2))
            Gt = Ut @ G @ U
            # Divided differences of w(λ) at fixed μ (Daleckii–Krein).
            dl = lam[:, :, None] - lam[:, None, :]
            delta = tau * torch.finfo(lam.dtype).eps ** (1.0 / 3.0)
            near = dl.abs() < delta
            mid = 0.5 * (lam[:, :, None] + lam[:, None, :])
            s_mid = torch.sigmoid((mu[:, None, None] - mid) / tau)
            deriv = -s_mid * (1.0 - s_mid) / tau
            dd = (w[:, :, None] - w[:, None, :]) / torch.where(near, torch.ones_like(dl), dl)
            pair = mask[:, :, None] & mask[:, None, :]
            Gamma = torch.where(near, deriv * smeared[:, None, None], dd) * pair
            inner = Gamma * Gt
            # Constraint Σ w = k moves μ: dμ = Σ v_i dλ_i / Σ v_i.
            vsum = v.sum(-1).clamp_min(torch.finfo(v.dtype).tiny)
            c = (v * torch.diagonal(Gt, dim1=-2, dim2=-1)).sum(-1) / vsum
            inner = inner + torch.diag_embed(c[:, None] * v)
            gL = U @ inner @ Ut
        return gL, gS, None, None, None


def lowpass_project(L: torch.Tensor, S: torch.Tensor, mask: torch.Tensor, k: int, tau: float) -> torch.Tensor:
    """Apply the smeared projector onto the ``k`` lowest modes of each block.

    Args:
        L: [C, n, n] Laplacians, zero outside each real block (see ``laplacian.dense_laplacian``).
        S: [C, n, ch] fields to project, zero on padding.
        mask: [C, n] bool, real atoms.
        k: number of modes. tau: smearing width in eigenvalue units.
    Returns:
        [C, n, ch], zero on padding.
    """
    if L.shape[0] == 0:
        return S
    return _LowPass.apply(L, S, mask, int(k), float(tau))
