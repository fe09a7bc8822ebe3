"""The k-mode projector for large components, without a full diagonalisation.

Same function as ``spectral.lowpass_project`` (the smeared projector ``P_k(L)``), for one
component given as a sparse Laplacian. Cost O(nnz · m) per iteration instead of O(n³):

* forward: the lowest ``m`` eigenpairs by shift-invert Lanczos (``scipy.sparse.linalg.eigsh``
  with one sparse LU of ``L + δI``), ``m`` grown until the occupation of mode ``m`` is below
  1e-11 (eigenvalues up to ~3.5 μ at τ = 0.05), so the neglected modes carry nothing;
* backward: the Daleckii–Krein terms inside the computed modes as in the dense path; the
  coupling of each occupied mode ``u_i`` to all uncomputed modes,
  ``Σ_{j∉m} u_j u_jᵀ / (λ_i − λ_j) G u_i``, is one linear solve
  ``(L − λ_i) x = −Q⊥ G u_i`` on the complement of the computed modes (deflated conjugate
  gradients preconditioned by the same LU; a handful of iterations since λ_j − λ_i ≥ λ_m/2).

Gradients are first order only (enough for forces and MD, not for training with a force loss
on such systems: use the dense path, i.e. components of at most ``DENSE_MAX`` atoms, to train).
Runs on the CPU (scipy); tensors on another device are moved there and back.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
from torch.autograd.function import once_differentiable

from .spectral import occupations

OCCUPATION_TOL = 1e-11  # occupation of the first mode not computed
COUPLING_TOL = 1e-9  # modes occupied less than this do not couple to the rest (ratio 100: a gap)
CG_TOL = 1e-10
CG_MAXITER = 200


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int) -> scipy.sparse.csr_matrix:
    return scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(n, n))


class _Factor:
    """Sparse LU of ``L + δI`` (δ > 0 keeps it definite despite the zero mode)."""

    def __init__(self, L: scipy.sparse.csr_matrix):
        scale = float(abs(L.diagonal()).mean()) or 1.0
        self.delta = 1e-6 * scale
        self.lu = scipy.sparse.linalg.splu((L + self.delta * scipy.sparse.identity(L.shape[0])).tocsc())

    def solve(self, x: np.ndarray) -> np.ndarray:
        return self.lu.solve(np.ascontiguousarray(x))


def lowest_modes(L: scipy.sparse.csr_matrix, k: int, tau: float, factor: _Factor):
    """Eigenpairs (λ [m], U [n, m]) of the smallest eigenvalues, enough that w_m < tolerance.

    Falls back to all n modes (dense ``eigh``) when that many are needed anyway.
    """
    n = L.shape[0]
    m = max(4 * k, k + 16)
    op = scipy.sparse.linalg.LinearOperator((n, n), matvec=factor.solve, dtype=np.float64)
    while m < n // 2:
        lam, U = scipy.sparse.linalg.eigsh(L, k=m, sigma=-factor.delta, OPinv=op, which="LM", tol=1e-13)
        order = np.argsort(lam)
        lam, U = np.clip(lam[order], 0.0, None), U[:, order]
        lam_t = torch.from_numpy(lam)[None]
        w, *_ = occupations(lam_t, torch.ones_like(lam_t, dtype=torch.bool), k, tau)
        if float(w[0, -1]) < OCCUPATION_TOL:
            return lam, U
        m *= 2
    lam, U = np.linalg.eigh(L.toarray())
    return np.clip(lam, 0.0, None), U


def _deflated_pcg(L, shifts: np.ndarray, B: np.ndarray, U: np.ndarray, factor: _Factor) -> np.ndarray:
    """Solve (L − shifts_c) X_c = B_c for every column c on the complement of span(U)."""

    def project(X):
        return X - U @ (U.T @ X)

    def apply(X):
        return project(L @ X - X * shifts[None, :])

    def precond(X):
        return project(factor.solve(X))

    B = project(B)
    X = np.zeros_like(B)
    R = B.copy()
    Z = precond(R)
    P = Z.copy()
    rz = (R * Z).sum(0)
    bnorm = np.linalg.norm(B, axis=0) + 1e-300
    for _ in range(CG_MAXITER):
        if (np.linalg.norm(R, axis=0) <= CG_TOL * bnorm).all():
            return X
        AP = apply(P)
        alpha = rz / np.where((P * AP).sum(0) == 0, 1.0, (P * AP).sum(0))
        X += P * alpha
        R = project(R - AP * alpha)  # keep rounding from leaking into span(U), where L - λ_i is indefinite
        Z = precond(R)
        rz_new = (R * Z).sum(0)
        P = Z + P * (rz_new / np.where(rz == 0, 1.0, rz))
        rz = rz_new
    raise RuntimeError("sparse k-mode projector: the gradient solve did not converge")


class _SparseLowPass(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vals, S, rows, cols, n, k, tau):
        L = _csr(rows, cols, vals.detach().double().cpu().numpy(), n)
        factor = _Factor(L)
        lam, U = lowest_modes(L, k, tau, factor)
        lam_t = torch.from_numpy(lam)[None]
        w, v, a, mu, _ = occupations(lam_t, torch.ones_like(lam_t, dtype=torch.bool), k, tau)
        w, v, a, mu = w[0].numpy(), v[0].numpy(), a[0].numpy(), float(mu[0])
        S_np = S.detach().double().cpu().numpy()
        Y = U @ (w[:, None] * (U.T @ S_np))
        ctx.state = (L, factor, lam, U, w, v, a, mu, S_np, rows, cols, tau)
        return torch.from_numpy(Y).to(S)

    @staticmethod
    @once_differentiable
    def backward(ctx, gY):
        L, factor, lam, U, w, v, a, mu, S, rows, cols, tau = ctx.state
        g = gY.detach().double().cpu().numpy()
        A, Bc = U.T @ g, U.T @ S  # [m, ch]
        gS = U @ (w[:, None] * A)
        Gt = 0.5 * (A @ Bc.T + Bc @ A.T)
        # inside the computed modes: as the dense path
        from .spectral import _derivative

        dl = lam[:, None] - lam[None, :]
        mid = 0.5 * (lam[:, None] + lam[None, :])
        near = np.abs(dl) < np.finfo(np.float64).eps ** (1.0 / 3.0) * (np.abs(mid) * tau + 1e-300)
        deriv = _derivative(torch.from_numpy(mid), torch.tensor(mu, dtype=torch.float64), tau).numpy()
        dd = (w[:, None] - w[None, :]) / np.where(near, 1.0, dl)
        inner = np.where(near, deriv, dd) * Gt
        inner += np.diag((v * np.diag(Gt)).sum() / max(v.sum(), 1e-300) * a)
        # coupling of occupied modes to the uncomputed rest: x_i = (λ_i − L)^-1 Q⊥ G u_i
        occ = w > COUPLING_TOL
        Gu = 0.5 * (g @ Bc[occ].T + S @ A[occ].T)  # [n, m_occ]
        X = -_deflated_pcg(L, lam[occ], Gu, U, factor) if U.shape[1] < U.shape[0] else np.zeros_like(Gu)
        Uo, wo = U[:, occ], w[occ]
        # gL = U inner Uᵀ + Σ_i w_i (u_i x_iᵀ + x_i u_iᵀ), needed only at the stored entries
        UI = U @ inner
        gvals = (UI[rows] * U[cols]).sum(-1)
        gvals += ((Uo[rows] * wo) * X[cols]).sum(-1) + ((X[rows] * wo) * Uo[cols]).sum(-1)
        dev = gY.device
        return (torch.from_numpy(gvals).to(device=dev, dtype=gY.dtype), torch.from_numpy(gS).to(gY),
                None, None, None, None, None)


def sparse_lowpass_project(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n: int,
                           S: torch.Tensor, k: int, tau: float) -> torch.Tensor:
    """``P_k(L) S`` for one component with Laplacian entries ``L[rows, cols] = vals`` ([nnz]).

    S: [n, ch]. Returns [n, ch]. Requires n > k + 1 (smaller components use the dense path).
    """
    return _SparseLowPass.apply(vals, S, rows.cpu().numpy(), cols.cpu().numpy(), int(n), int(k), float(tau))
