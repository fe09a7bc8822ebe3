r"""The layers of the MACE backbone (``phizoo/models/mace.py``; the equations are in its docstring):
:class:`SymmetricProductBasis` (MACE's product basis of correlation order ν from e3nn tensor
products) and :class:`MACEInteraction` (one layer: one-particle basis A, product basis,
element-dependent residual). Their tensor products are evaluated by the fused kernels of
:mod:`phizoo.nn.fused_tp`.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet
from torch import nn

from ..nn.fused_tp import ChannelwiseTP, EdgeTensorProduct, from_ir_mul, to_ir_mul


def natural_irreps(mul: int, lmax: int) -> o3.Irreps:
    """``mul x 0e + mul x 1o + mul x 2e + ...`` up to ``lmax`` (parity (-1)^l, like spherical harmonics)."""
    return o3.Irreps([(mul, (l, (-1) ** l)) for l in range(lmax + 1)])


def _couples(ir1: o3.Irrep, ir2: o3.Irrep, ir_out: o3.Irrep) -> bool:
    return ir_out in list(ir1 * ir2)


def _symmetric_nonzero(l1: int, l2: int, l_out: int) -> bool:
    """Whether x ⊗ x (same vector in both slots, l1 == l2) survives in ``l_out``: the symmetric part
    of e3nn's real Clebsch-Gordan tensor (it is either symmetric or antisymmetric in its first two
    indices; the antisymmetric couplings, odd ``l_out`` for ``l1 == l2``, vanish identically)."""
    c = o3.wigner_3j(l1, l2, l_out, dtype=torch.float64)
    return bool((c + c.transpose(0, 1)).abs().max() > 1e-9)


class SymmetricProductBasis(nn.Module):
    r"""MACE's product basis ``Σ_ν Σ_η w^{z}_{kνη} B^{(ν)}_{kη}`` from e3nn tensor products.

    Input ``A`` [N, K x (irreps_a)], element attributes [N, attr_dim]; output [N, K x (irreps_out)].

    Construction (all tensor products channel-wise, e3nn mode ``"uuu"``: channel ``k`` of the
    output only sees channel ``k`` of every factor, as in MACE):

    * ``T_1 = A``.
    * ``T_2 = Sym(A ⊗ A)``: unweighted couplings ``(A_{l1} ⊗ A_{l2})_λ`` for ``l1 <= l2`` only
      (``(l2, l1)`` is the same polynomial up to sign), and for ``l1 == l2`` only the symmetric
      couplings (``λ`` even; the antisymmetric ones vanish on ``x ⊗ x``). Every path is kept as its
      own irrep slot (no summation), so no coupling information is lost.
    * ``T_n = T_{n-1} ⊗ A`` (``n >= 3``, only for ``correlation >= 4``), all paths kept.
    * Only slots that can still reach an output irrep in the remaining steps are kept
      (``λ <= max_ell_A + L_out`` for ``correlation = 3``, and the matching parity).
    * One final, **weighted** tensor product with per-atom weights ``w^{z_i}``::

          B = TP_w( [1 ⊕ T_1 ⊕ ... ⊕ T_{ν-1}] ,  A )  ->  irreps_out

      ``1 ⊗ A`` gives ``ν = 1``, ``T_1 ⊗ A`` (symmetric pairs only, as for ``T_2``) gives ``ν = 2``,
      ``T_{n} ⊗ A`` gives ``ν = n + 1``. Each full coupling path (e.g. ``((l1 l2)λ l3) L``) has its
      own weight per channel and element.

    The ``ν``-th term is a homogeneous polynomial of degree ``ν`` in ``A`` and the family spans every
    channel-wise equivariant polynomial of ``A`` of degree ``<= correlation`` (the coupled basis of
    ``A^{⊗ν}`` is complete; the symmetric restriction removes only vanishing or duplicated terms).
    Compared with mace-torch's generalised Clebsch-Gordan contraction (``U`` matrices of the
    symmetric power, a minimal basis) the paths of ``T_2 ⊗ A`` are not linearly independent on
    ``x ⊗ x ⊗ x``: some weights are redundant (more parameters, same function space).
    There is no constant (``ν = 0``) term, so ``B = 0`` for an atom without neighbours.
    """

    def __init__(self, irreps_a: o3.Irreps, irreps_out: o3.Irreps, correlation: int, attr_dim: int,
                 onehot: bool = False, fused: bool = True, path_scaling: str = "constant"):
        super().__init__()
        self.fused = fused
        if path_scaling not in ("constant", "init"):
            raise ValueError(f"path_scaling must be 'constant' or 'init', got {path_scaling!r}")
        if correlation < 1:
            raise ValueError(f"correlation must be >= 1, got {correlation}")
        irreps_a, irreps_out = o3.Irreps(irreps_a), o3.Irreps(irreps_out)
        muls = {mul for mul, _ in irreps_a} | {mul for mul, _ in irreps_out}
        if len(muls) != 1:
            raise ValueError(f"all irreps need one multiplicity (channel-wise products), got {irreps_a}, {irreps_out}")
        K = muls.pop()
        self.K, self.correlation, self.attr_dim = K, int(correlation), int(attr_dim)
        self.irreps_a, self.irreps_out = irreps_a, irreps_out
        a_irs = [ir for _, ir in irreps_a]
        out_irs = [ir for _, ir in irreps_out]
        # reach[r]: irreps that couple to some output irrep with r more factors of A
        lmax = max(ir.l for ir in out_irs) + (correlation - 1) * max(ir.l for ir in a_irs)
        candidates = [o3.Irrep(l, p) for l in range(lmax + 1) for p in (1, -1)]
        reach = [set(out_irs)]
        for _ in range(1, correlation):
            reach.append({ir for ir in candidates if any(_couples(ir, a, o) for a in a_irs for o in reach[-1])})

        # intermediate stages T_2 .. T_{c-1}: unweighted, one slot per path
        self.stages = nn.ModuleList()
        self.stage_paths: list[list[tuple]] = []  # description of every slot (for docs and tests)
        prev_irs = a_irs
        prev_desc: list[tuple] = [(ir.l,) for ir in a_irs]
        inter_irreps: list[o3.Irreps] = []
        for n in range(2, correlation):
            keep = set().union(*reach[1:correlation - n + 1])
            slots, instr, desc = [], [], []
            for i1, ir1 in enumerate(prev_irs):
                for i2, ir2 in enumerate(a_irs):
                    if n == 2 and i2 < i1:
                        continue
                    for ir in ir1 * ir2:
                        if ir not in keep:
                            continue
                        if n == 2 and i1 == i2 and not _symmetric_nonzero(ir1.l, ir2.l, ir.l):
                            continue
                        instr.append((i1, i2, len(slots), "uuu", False))
                        slots.append((K, ir))
                        desc.append(prev_desc[i1] + (ir.l, ir2.l) if n > 2 else (ir1.l, ir2.l, ir.l))
            irreps_n = o3.Irreps(slots)
            in1 = irreps_a if n == 2 else inter_irreps[-1]
            self.stages.append(o3.TensorProduct(in1, irreps_a, irreps_n, instr, irrep_normalization="component",
                                                path_normalization="element", internal_weights=False,
                                                shared_weights=True))
            inter_irreps.append(irreps_n)
            self.stage_paths.append(desc)
            prev_irs, prev_desc = [ir for _, ir in irreps_n], desc

        # final weighted coupling: in1 = 1 ⊕ T_1 ⊕ ... ⊕ T_{c-1}, in2 = A
        in1_slots = [(K, o3.Irrep("0e"))]
        blocks = [("one", [o3.Irrep("0e")])]
        if correlation >= 2:
            blocks.append(("T1", a_irs))
        for n, irr in enumerate(inter_irreps, start=2):
            blocks.append((f"T{n}", [ir for _, ir in irr]))
        instr, self.paths = [], []  # paths: (nu, slot block, in1 irrep, in2 irrep, out irrep)
        offset = 0
        for bi, (name, irs) in enumerate(blocks):
            if name != "one":
                in1_slots += [(K, ir) for ir in irs]
            nu = 1 if name == "one" else int(name[1:]) + 1
            for i1, ir1 in enumerate(irs):
                for i2, ir2 in enumerate(a_irs):
                    if name == "T1" and i2 < i1:
                        continue
                    for io, iro in enumerate(out_irs):
                        if not _couples(ir1, ir2, iro):
                            continue
                        if name == "T1" and i1 == i2 and not _symmetric_nonzero(ir1.l, ir2.l, iro.l):
                            continue
                        instr.append((offset + i1, i2, io, "uuu", True))
                        self.paths.append((nu, name, str(ir1), str(ir2), str(iro)))
            offset += len(irs)
        # normalisation: every correlation order contributes with unit weight to each output irrep
        # (e3nn's "element" normalisation over all paths would let the many ν = 3 paths drown ν = 1)
        count: dict[tuple[int, int], int] = {}
        for ins, p in zip(instr, self.paths):
            count[(p[0], ins[2])] = count.get((p[0], ins[2]), 0) + 1
        # path_scaling "constant": 1/count is a fixed path weight (e3nn multiplies by its square root)
        # and the weights start N(0, 1); "init" (mace-torch's parameterisation): unit path weights,
        # weights start N(0, 1)/√count: the same function at initialisation, but each Adam step
        # (~lr per weight) moves the output √count times further
        norm = [1.0 / count[(p[0], ins[2])] for ins, p in zip(instr, self.paths)]
        instr = [ins + ((c if path_scaling == "constant" else 1.0),) for ins, c in zip(instr, norm)]
        self.irreps_in1 = o3.Irreps(in1_slots)
        self.final = o3.TensorProduct(self.irreps_in1, irreps_a, irreps_out, instr, irrep_normalization="component",
                                      path_normalization="none", internal_weights=False, shared_weights=False)
        # per-element weights: w^{z} = attr(z) @ weight. One-hot attributes: one row per element, N(0, 1)
        # like e3nn's internal weights; a learned N(0, 1) embedding of width d: rows N(0, 1/d).
        scale = 1.0 if onehot else 1.0 / math.sqrt(attr_dim)
        weight = torch.randn(attr_dim, self.final.weight_numel) * scale
        if path_scaling == "init":
            weight = weight * torch.tensor(norm).sqrt().repeat_interleave(K)
        self.weight = nn.Parameter(weight)
        # fused evaluation of the same tensor products (see ChannelwiseTP); fused=False calls e3nn's
        self.fused_stages = nn.ModuleList(ChannelwiseTP(tp) for tp in self.stages)
        self.fused_final = ChannelwiseTP(self.final)

    @property
    def num_paths(self) -> dict[int, int]:
        """Number of weighted coupling paths per correlation order ν (each has K weights per element)."""
        out: dict[int, int] = {}
        for p in self.paths:
            out[p[0]] = out.get(p[0], 0) + 1
        return out

    def forward(self, a: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        """a [N, K x irreps_a] (e3nn layout), attr [N, attr_dim] -> [N, K x irreps_out] (e3nn layout)."""
        weight = attr @ self.weight
        if not self.fused:
            parts = [a.new_ones(a.shape[0], self.K)]
            if self.correlation >= 2:
                parts.append(a)
            t = a
            for stage in self.stages:
                t = stage(t, a)
                parts.append(t)
            return self.final(torch.cat(parts, dim=-1), a, weight)
        x = to_ir_mul(a, self.irreps_a)
        parts = [x.new_ones(x.shape[0], 1, self.K)]
        if self.correlation >= 2:
            parts.append(x)
        t = x
        for stage in self.fused_stages:
            t = stage(t, x)
            parts.append(t)
        return from_ir_mul(self.fused_final(torch.cat(parts, dim=1), x, weight), self.irreps_out)


class MACEInteraction(nn.Module):
    """One MACE layer: one-particle basis A, symmetric product basis, element-dependent residual."""

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, irreps_sh: o3.Irreps, irreps_a: o3.Irreps,
                 attr_irreps: o3.Irreps, num_bessel: int, radial_mlp: Sequence[int], correlation: int,
                 fused: bool = True, onehot: bool = False, skip: bool = True, separate_paths: bool = False,
                 path_scaling: str = "constant"):
        super().__init__()
        self.irreps_in, self.irreps_out, self.irreps_a = irreps_in, irreps_out, irreps_a
        self.skip = o3.FullyConnectedTensorProduct(irreps_in, attr_irreps, irreps_out) if skip else None
        self.linear_up = o3.Linear(irreps_in, irreps_in)
        self.conv = EdgeTensorProduct(irreps_in, irreps_sh, irreps_a, fused=fused, separate_paths=separate_paths)
        self.radial = FullyConnectedNet([num_bessel, *radial_mlp, self.conv.weight_numel], torch.nn.functional.silu)
        self.linear_a = o3.Linear(self.conv.irreps_out, irreps_a)
        self.product = SymmetricProductBasis(irreps_a, irreps_out, correlation, attr_irreps.dim, onehot=onehot,
                                             fused=fused, path_scaling=path_scaling)
        self.linear_out = o3.Linear(irreps_out, irreps_out)

    def forward(self, h, attr, edge_sh, edge_radial, src, dst, inv_avg: torch.Tensor):
        """``inv_avg`` = 1 / avg_num_neighbors (a 0-d tensor, the backbone's buffer)."""
        x = to_ir_mul(self.linear_up(h), self.irreps_in)
        a = self.conv(x, edge_sh, self.radial(edge_radial), src, dst, h.shape[0])
        a = self.linear_a(from_ir_mul(a, self.conv.irreps_out)) * inv_avg
        m = self.linear_out(self.product(a, attr))
        return m if self.skip is None else m + self.skip(h, attr)
