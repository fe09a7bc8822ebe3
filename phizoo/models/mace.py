r"""MACE-like backbone on e3nn (Batatia, Kovács, Simm, Ortner, Csányi, NeurIPS 2022,
"MACE: Higher Order Equivariant Message Passing Neural Networks", arXiv:2206.07697).

Per atom ``i`` and layer ``t`` the features ``h`` are e3nn irreps: ``K x 0e`` after the
embedding, ``K x (0e + 1o + ... + L_hidden)`` between layers (natural parity, as mace-torch's
``128x0e+128x1o``), ``K x 0e`` after the last layer (only scalars are read). One layer:

1. one-particle basis (the paper's eq. 8)::

       A_i = Linear( Σ_j  TP_uvu( W h_j ,  Y(r̂_ij) ;  R(r_ij) ) ) / avg_num_neighbors

   ``Y`` = real spherical harmonics up to ``max_ell`` (e3nn, component normalisation),
   ``R`` = radial MLP (e3nn ``FullyConnectedNet``, no biases) on Bessel functions times the
   polynomial envelope, one weight per channel and coupling path ``(l1, l2) -> l3``. As in the
   paper, paths into the same ``l3`` are summed on the edge (mace-torch keeps them apart until
   the linear after aggregation: 3x the per-edge memory at ``L_hidden = 1``). ``A`` has irreps
   ``K x (0e + 1o + 2e + 3o)`` for ``max_ell = 3``.

2. symmetric product basis of correlation order ``ν`` (MACE's "symmetric contraction"),
   built from e3nn ``TensorProduct``\ s (see :class:`SymmetricProductBasis`)::

       m_i = Linear( Σ_{ν=1..correlation} Σ_η  w^{z_i}_{k,ν,η}  B^{(ν)}_{i,k,η} )

   ``B^{(ν)}`` is a channel-wise (same ``k`` in every factor) coupling of ``ν`` copies of
   ``A_{i,k}`` to an output irrep; its weights depend on the element of atom ``i``.

3. update with an element-dependent residual (e3nn ``FullyConnectedTensorProduct`` of ``h`` with
   the element attributes, mace-torch's ``skip_tp``) in every layer but the first (as mace-torch:
   layer 1's input is only the element embedding)::

       h_i <- m_i + Σ_a attr(z_i)_a W_a h_i        (layer 1: h_i <- m_i)

Data statistics: ``avg_num_neighbors`` (the normalisation of the neighbour sum) is a float64 buffer,
saved with the weights; ``fit_data_statistics(dataset, indices)`` sets it to the mean number of
neighbours within the cutoff over the training structures (mace-torch's ``compute_avg_num_neighbors``;
phizoo's trainer calls it on the train split together with the element references and the
scale/shift of the energy head, which are mace-torch's E0s and mean/std scaling).

Body order: ``A`` is a sum over single neighbours (2-body); ``B^{(ν)}`` multiplies ``ν`` of them,
so one layer is ``(ν + 1)``-body (4-body for ``correlation = 3``); stacking ``T`` layers raises it
further. Element attributes ``attr(z)``: a one-hot over ``elements`` (exactly mace-torch's
``node_attrs``) or, when ``elements`` is ``None``, a learned ``element_dim``-dimensional
embedding of every Z (a rank-``element_dim`` factorisation of the per-element weights; any Z in
1..118 is accepted).

Readout (in ``Potential``): ``features`` = the scalars of every layer concatenated (mace-torch
sums one readout per layer; an MLP on the concatenation contains that), ``layer_features`` =
each layer's scalars, for the Φ-Module.

Evaluation: the e3nn tensor products define the functions; by default (``fused=True``) they are
evaluated by :class:`EdgeTensorProduct` and :class:`ChannelwiseTP` in a cheaper order, with
e3nn's Clebsch-Gordan tensors and path weights, in an irrep-major layout ``[N, Σ(2l+1), K]``
(equal to e3nn's result to rounding; tests/models/test_mace.py). See docs/readme/mace.md.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet
from torch import nn
from torch_geometric.utils import scatter

from ..nn.graph import Graph
from ..nn.radial import RadialBasis, polynomial_envelope
from ..registry import register_model
from .backbone import Backbone, BackboneOutput
from .potential import MAX_Z


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


class ChannelwiseTP(nn.Module):
    r"""Fused evaluation of an e3nn ``"uuu"`` (channel-wise) ``o3.TensorProduct`` in irrep-major layout.

    ``tp`` defines the function: ``out[n, l3 m3, k] = Σ_p c_p w[n, p, k] Σ_{m1 m2} C_p[m1, m2, m3]
    x1[n, l1 m1, k] x2[n, l2 m2, k]`` (``w`` = 1 for unweighted paths; ``C`` = ``o3.wigner_3j``,
    ``c_p`` = e3nn's ``path_weight``). Instead of e3nn's per-path outer products, paths are grouped so
    that every group is one constant matrix times a slice of the (weighted) first input, a product
    with the second input and a sum over ``m2``:

    * unweighted (``tp`` without weights): groups = pairs of input irreps ``(i1, i2)``;
      ``U = C_g @ x1[l1]`` with ``C_g[(m2, out), m1]``, then ``Σ_{m2} U * x2[l2]``.
    * per-sample weights: ``V[(p, m1)] = w[p] x1[l1(p), m1]``; groups = ``(i2, i_out)``;
      ``U = C_g @ V[rows of g]`` with ``C_g[(m2, m3), (p, m1)]``, then ``Σ_{m2} U * x2[l2]``.

    Tensors: x1 [N, D1, K], x2 [N, D2, K], weight [N, weight_numel] (or None) -> [N, D_out, K].
    """

    def __init__(self, tp: o3.TensorProduct):
        super().__init__()
        if any(ins.connection_mode != "uuu" for ins in tp.instructions):
            raise ValueError("ChannelwiseTP needs 'uuu' instructions")
        self.weighted = any(ins.has_weight for ins in tp.instructions)
        if self.weighted and not all(ins.has_weight for ins in tp.instructions):
            raise ValueError("all instructions weighted or none")
        self.K = tp.irreps_out[0].mul
        self.num_paths = len(tp.instructions)
        self.d_out = sum(ir.dim for _, ir in tp.irreps_out)
        off1, off2, offo = _offsets(tp.irreps_in1), _offsets(tp.irreps_in2), _offsets(tp.irreps_out)
        ir1 = [ir for _, ir in tp.irreps_in1]
        ir2 = [ir for _, ir in tp.irreps_in2]
        iro = [ir for _, ir in tp.irreps_out]
        groups: dict[tuple[int, int], list[int]] = {}
        for p, ins in enumerate(tp.instructions):
            key = (ins.i_in2, ins.i_out) if self.weighted else (ins.i_in1, ins.i_in2)
            groups.setdefault(key, []).append(p)
        self.groups: list[dict] = []
        cols, ridx, mats = [], [], []
        row = 0
        for key, paths in groups.items():
            outs = sorted({tp.instructions[p].i_out for p in paths})
            out_idx = [j for io in outs for j in range(offo[io], offo[io] + iro[io].dim)]
            pos = {io: sum(iro[o].dim for o in outs[:k]) for k, io in enumerate(outs)}
            if self.weighted:  # matmul over the weighted rows (p, m1), product with x2
                i2 = key[0]
                n_in = sum(ir1[tp.instructions[p].i_in1].dim for p in paths)
                gemm_in, mul_in = (row, row + n_in), (off2[i2], off2[i2] + ir2[i2].dim)
                swap = False
            else:  # matmul over the larger of the two input irreps, product with the smaller
                i1, i2 = key
                swap = ir1[i1].dim < ir2[i2].dim
                n_in = ir2[i2].dim if swap else ir1[i1].dim
                gemm_in = (off2[i2], off2[i2] + ir2[i2].dim) if swap else (off1[i1], off1[i1] + ir1[i1].dim)
                mul_in = (off1[i1], off1[i1] + ir1[i1].dim) if swap else (off2[i2], off2[i2] + ir2[i2].dim)
            d_mul = mul_in[1] - mul_in[0]
            c = torch.zeros(d_mul, len(out_idx), n_in, dtype=torch.float64)
            col = 0
            for p in paths:
                ins = tp.instructions[p]
                l1, l2, l3 = ir1[ins.i_in1].l, ir2[ins.i_in2].l, iro[ins.i_out].l
                w3j = o3.wigner_3j(l1, l2, l3, dtype=torch.float64) * ins.path_weight  # [d1, d2, d3]
                d1, d3 = 2 * l1 + 1, 2 * l3 + 1
                o0 = pos[ins.i_out]
                if self.weighted:
                    c[:, o0:o0 + d3, col:col + d1] += w3j.permute(1, 2, 0)
                    cols += list(range(off1[ins.i_in1], off1[ins.i_in1] + d1))
                    ridx += [p] * d1
                    col += d1
                elif swap:
                    c[:, o0:o0 + d3, :] += w3j.permute(0, 2, 1)
                else:
                    c[:, o0:o0 + d3, :] += w3j.permute(1, 2, 0)
            mats.append(c.reshape(d_mul * len(out_idx), n_in))
            contiguous = out_idx == list(range(out_idx[0], out_idx[0] + len(out_idx)))
            self.groups.append({"gemm_in": gemm_in, "mul_in": mul_in, "swap": swap, "n_out": len(out_idx),
                                "d_mul": d_mul,
                                "range": (out_idx[0], out_idx[0] + len(out_idx)) if contiguous else None})
            self.register_buffer(f"out_idx_{len(self.groups) - 1}", torch.tensor(out_idx, dtype=torch.long),
                                 persistent=False)
            row += n_in if self.weighted else 0
        # outputs assembled by concatenation when the groups' output ranges are contiguous and either
        # identical (summed) or disjoint; otherwise by index_add
        ranges = sorted({g["range"] for g in self.groups}) if all(g["range"] for g in self.groups) else None
        if ranges and all(r1[1] <= r2[0] for r1, r2 in zip(ranges[:-1], ranges[1:])):
            self.ranges = ranges
        else:
            self.ranges = None
        self._mats64 = mats  # exact master copies; buffers follow the module dtype
        for g, m in enumerate(mats):
            self.register_buffer(f"mat_{g}", m.to(torch.get_default_dtype()), persistent=False)
        self.register_buffer("cols", torch.tensor(cols, dtype=torch.long), persistent=False)
        self.register_buffer("ridx", torch.tensor(ridx, dtype=torch.long), persistent=False)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for g, m in enumerate(self._mats64):
            ref = getattr(self, f"mat_{g}")
            setattr(self, f"mat_{g}", m.to(device=ref.device, dtype=ref.dtype))
        return self

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        N, K = x1.shape[0], self.K
        if self.weighted:
            x1 = x1.index_select(1, self.cols) * weight.view(N, self.num_paths, K).index_select(1, self.ridx)
        contrib = []
        for g, grp in enumerate(self.groups):
            src_g, src_m = (x2, x1) if grp["swap"] else (x1, x2)
            a, b = grp["gemm_in"]
            u = torch.matmul(getattr(self, f"mat_{g}"), src_g[:, a:b])  # [N, d_mul * n_out, K]
            a2, b2 = grp["mul_in"]
            contrib.append((u.view(N, grp["d_mul"], grp["n_out"], K) * src_m[:, a2:b2].unsqueeze(2)).sum(1))
        if self.ranges is None:
            out = x1.new_zeros(N, self.d_out, K)
            for g, u in enumerate(contrib):
                out = out.index_add(1, getattr(self, f"out_idx_{g}"), u)
            return out
        sums: dict[tuple[int, int], torch.Tensor] = {}
        for grp, u in zip(self.groups, contrib):
            r = grp["range"]
            sums[r] = sums[r] + u if r in sums else u
        pieces, end = [], 0
        for r in self.ranges:
            if r[0] > end:
                pieces.append(x1.new_zeros(N, r[0] - end, K))
            pieces.append(sums[r])
            end = r[1]
        if end < self.d_out:
            pieces.append(x1.new_zeros(N, self.d_out - end, K))
        return torch.cat(pieces, dim=1)


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
                 onehot: bool = False, fused: bool = True):
        super().__init__()
        self.fused = fused
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
        instr = [ins + (1.0 / count[(p[0], ins[2])],) for ins, p in zip(instr, self.paths)]
        self.irreps_in1 = o3.Irreps(in1_slots)
        self.final = o3.TensorProduct(self.irreps_in1, irreps_a, irreps_out, instr, irrep_normalization="component",
                                      path_normalization="none", internal_weights=False, shared_weights=False)
        # per-element weights: w^{z} = attr(z) @ weight. One-hot attributes: one row per element, N(0, 1)
        # like e3nn's internal weights; a learned N(0, 1) embedding of width d: rows N(0, 1/d).
        scale = 1.0 if onehot else 1.0 / math.sqrt(attr_dim)
        self.weight = nn.Parameter(torch.randn(attr_dim, self.final.weight_numel) * scale)
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


def _is_fx_constant(key: str) -> bool:
    """e3nn compiles its tensor products into torch.fx modules; ``copy.deepcopy`` of those turns
    their constant tensors (Wigner 3j blocks, rebuilt from the irreps at construction) into
    buffers named ``..._compiled_main_*._tensor_constant<i>``. They are not weights."""
    return "._compiled_main" in key and "._tensor_constant" in key


def _drop_fx_constants(module, state_dict, prefix, local_metadata) -> None:
    for key in [k for k in state_dict if k.startswith(prefix) and _is_fx_constant(k)]:
        del state_dict[key]


def _ignore_missing_fx_constants(module, incompatible_keys) -> None:
    incompatible_keys.missing_keys[:] = [k for k in incompatible_keys.missing_keys if not _is_fx_constant(k)]
    incompatible_keys.unexpected_keys[:] = [k for k in incompatible_keys.unexpected_keys if not _is_fx_constant(k)]


class EdgeTensorProduct(nn.Module):
    r"""The one-particle-basis tensor product on the edges, summed into the target nodes.

    Definition: the e3nn ``o3.TensorProduct`` ``self.tp`` (mode ``"uvu"``, per-edge weights = the
    radial MLP's output; paths into the same output irrep summed), i.e. for every path
    ``p = (l1, l2 -> l3)``::

        out_e[l3 m3, k] += c_p R_e[p, k] Σ_{m1 m2} C^{l3 m3}_{l1 m1, l2 m2} x_j[l1 m1, k] Y_e[l2 m2]

    with e3nn's Clebsch-Gordan tensor ``C`` (``o3.wigner_3j``) and e3nn's normalisation ``c_p``
    (``tp.instructions[p].path_weight``).

    Evaluation order (``fused=True``): the edge-only factor
    ``M_e[(p, m1), m3] = c_p Σ_{m2} C[m1, m2, m3] Y_e[m2]`` is formed first, for all paths at once
    (one ``[E, sh] @ [sh, rows * D_out]`` matmul, no channel index), then
    ``Z_e[(p, m1), k] = R_e[p, k] x_j[m1, k]`` and one batched matmul ``out_e = M_eᵀ Z_e``
    (``[D_out, rows] @ [rows, K]`` per edge). Cost per edge and channel ``rows * D_out`` instead of
    e3nn's ``Σ_p d1 d2 d3`` plus its per-path outer products, with a handful of large kernels
    instead of several per path. ``fused=False`` calls ``self.tp`` itself; both agree to rounding
    (tested).

    Layout: node features in and per-node sums out are irrep-major, ``[N, Σ_l (2l+1), K]``
    (see :func:`to_ir_mul`).
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_out: o3.Irreps, fused: bool = True):
        super().__init__()
        self.irreps_in, self.irreps_sh, self.irreps_out = irreps_in, irreps_sh, irreps_out
        self.K = irreps_in[0].mul
        self.fused = fused
        targets = {ir: i for i, (_, ir) in enumerate(irreps_out)}
        instr = [(i1, i2, targets[ir], "uvu", True)
                 for i1, (_, ir1) in enumerate(irreps_in) for i2, (_, ir2) in enumerate(irreps_sh)
                 for ir in ir1 * ir2 if ir in targets]
        self.tp = o3.TensorProduct(irreps_in, irreps_sh, irreps_out, instr, irrep_normalization="component",
                                   path_normalization="element", internal_weights=False, shared_weights=False)
        self.num_paths = len(self.tp.instructions)
        self.weight_numel = self.tp.weight_numel
        off_in, off_sh, off_out = _offsets(irreps_in), _offsets(irreps_sh), _offsets(irreps_out)
        rows = sum(irreps_in[ins.i_in1].ir.dim for ins in self.tp.instructions)
        self.rows, self.d_out = rows, sum(ir.dim for _, ir in irreps_out)
        g = torch.zeros(irreps_sh.dim, self.d_out, rows, dtype=torch.float64)  # M_e = Y_e @ g: [d_out, rows]
        cols, ridx, row = [], [], 0
        for p, ins in enumerate(self.tp.instructions):
            l1, l2, l3 = irreps_in[ins.i_in1].ir.l, irreps_sh[ins.i_in2].ir.l, irreps_out[ins.i_out].ir.l
            c = o3.wigner_3j(l1, l2, l3, dtype=torch.float64) * ins.path_weight  # [d1, d2, d3]
            d1, d2, d3 = 2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1
            o2, o3_ = off_sh[ins.i_in2], off_out[ins.i_out]
            g[o2:o2 + d2, o3_:o3_ + d3, row:row + d1] = c.permute(1, 2, 0)
            cols += list(range(off_in[ins.i_in1], off_in[ins.i_in1] + d1))
            ridx += [p] * d1
            row += d1
        self._g64 = g.reshape(irreps_sh.dim, -1)  # exact master copy; the buffer follows the module dtype
        self.register_buffer("g", self._g64.to(torch.get_default_dtype()), persistent=False)
        self.register_buffer("cols", torch.tensor(cols, dtype=torch.long), persistent=False)
        self.register_buffer("ridx", torch.tensor(ridx, dtype=torch.long), persistent=False)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.g = self._g64.to(device=self.g.device, dtype=self.g.dtype)  # CG coefficients never rounded twice
        return self

    def forward(self, x: torch.Tensor, sh: torch.Tensor, weight: torch.Tensor, src: torch.Tensor,
                dst: torch.Tensor, num_nodes: int) -> torch.Tensor:
        """x [N, D_in, K] (irrep-major), sh [E, sh_dim], weight [E, weight_numel] -> [N, D_out, K]."""
        E, K = sh.shape[0], self.K
        if not self.fused:
            msg = self.tp(from_ir_mul(x[src], self.irreps_in), sh, weight)
            out = scatter(msg, dst, dim=0, dim_size=num_nodes, reduce="sum")
            return to_ir_mul(out, self.irreps_out)
        z = x.index_select(1, self.cols)[src] * weight.view(E, self.num_paths, K).index_select(1, self.ridx)
        m = (sh @ self.g).view(E, self.d_out, self.rows)
        return scatter(torch.bmm(m, z), dst, dim=0, dim_size=num_nodes, reduce="sum")


def _offsets(irreps: o3.Irreps) -> list[int]:
    """Offset of every irrep along the irrep axis of the irrep-major layout."""
    out, o = [], 0
    for _, ir in irreps:
        out.append(o)
        o += ir.dim
    return out


def to_ir_mul(x: torch.Tensor, irreps: o3.Irreps) -> torch.Tensor:
    """e3nn layout [..., Σ_i K (2l_i+1)] -> irrep-major [..., Σ_i (2l_i+1), K] (all multiplicities K)."""
    K = irreps[0].mul
    parts = [x[..., s].reshape(*x.shape[:-1], K, ir.dim).transpose(-1, -2)
             for s, (_, ir) in zip(irreps.slices(), irreps)]
    return torch.cat(parts, dim=-2)


def from_ir_mul(x: torch.Tensor, irreps: o3.Irreps) -> torch.Tensor:
    """Inverse of :func:`to_ir_mul`."""
    parts = torch.split(x, [ir.dim for _, ir in irreps], dim=-2)
    return torch.cat([p.transpose(-1, -2).reshape(*x.shape[:-2], -1) for p in parts], dim=-1)


class MACEInteraction(nn.Module):
    """One MACE layer: one-particle basis A, symmetric product basis, element-dependent residual."""

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, irreps_sh: o3.Irreps, irreps_a: o3.Irreps,
                 attr_irreps: o3.Irreps, num_bessel: int, radial_mlp: Sequence[int], correlation: int,
                 fused: bool = True, onehot: bool = False, skip: bool = True):
        super().__init__()
        self.irreps_in, self.irreps_out, self.irreps_a = irreps_in, irreps_out, irreps_a
        self.skip = o3.FullyConnectedTensorProduct(irreps_in, attr_irreps, irreps_out) if skip else None
        self.linear_up = o3.Linear(irreps_in, irreps_in)
        self.conv = EdgeTensorProduct(irreps_in, irreps_sh, irreps_a, fused=fused)
        self.radial = FullyConnectedNet([num_bessel, *radial_mlp, self.conv.weight_numel], torch.nn.functional.silu)
        self.linear_a = o3.Linear(irreps_a, irreps_a)
        self.product = SymmetricProductBasis(irreps_a, irreps_out, correlation, attr_irreps.dim, onehot=onehot,
                                             fused=fused)
        self.linear_out = o3.Linear(irreps_out, irreps_out)

    def forward(self, h, attr, edge_sh, edge_radial, src, dst, inv_avg: torch.Tensor):
        """``inv_avg`` = 1 / avg_num_neighbors (a 0-d tensor, the backbone's buffer)."""
        x = to_ir_mul(self.linear_up(h), self.irreps_in)
        a = self.conv(x, edge_sh, self.radial(edge_radial), src, dst, h.shape[0])
        a = self.linear_a(from_ir_mul(a, self.irreps_a)) * inv_avg
        m = self.linear_out(self.product(a, attr))
        return m if self.skip is None else m + self.skip(h, attr)


@register_model("mace")
class MACE(Backbone):
    """MACE-like backbone (e3nn).

    Args:
        num_channels: K, channels of every irrep.
        max_ell: l_max of the edge spherical harmonics and of the one-particle basis A.
        hidden_l: largest l of the features passed between layers (``K x 0e + K x 1o`` for 1).
        correlation: ν, order of the symmetric product basis (one layer is (ν+1)-body).
        num_layers: interaction layers (>= 1).
        num_bessel: Bessel radial functions; cutoff (Å); envelope_exponent: p of the polynomial envelope.
        radial_mlp: hidden widths of the radial MLP.
        avg_num_neighbors: normalisation of the neighbour sum (initial value of the buffer that
            ``fit_data_statistics`` sets from the training split).
        elements: atomic numbers with a one-hot attribute each (mace-torch's node_attrs); ``None`` =
            a learned ``element_dim`` embedding of every Z in 1..118.
    """

    def __init__(self, num_channels: int = 128, max_ell: int = 3, hidden_l: int = 1, correlation: int = 3,
                 num_layers: int = 2, num_bessel: int = 8, cutoff: float = 5.0, envelope_exponent: int = 5,
                 radial_mlp: Sequence[int] = (64, 64, 64), avg_num_neighbors: float = 10.0,
                 elements: Sequence[int] | None = None, element_dim: int = 16, fused: bool = True):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if hidden_l > max_ell:
            raise ValueError(f"hidden_l ({hidden_l}) must be <= max_ell ({max_ell})")
        K = int(num_channels)
        self.cutoff = float(cutoff)
        self.num_layers = int(num_layers)
        self.envelope_exponent = int(envelope_exponent)
        self.feature_dim = K * num_layers
        self.layer_feature_dims = [K] * num_layers
        self.num_channels = K
        self.register_buffer("avg_num_neighbors", torch.tensor(float(avg_num_neighbors), dtype=torch.float64))
        # element attributes
        if elements is not None:
            elements = [int(e) for e in elements]
            if len(set(elements)) != len(elements) or not all(1 <= e <= MAX_Z for e in elements):
                raise ValueError(f"elements must be distinct atomic numbers in 1..{MAX_Z}, got {elements}")
            index = torch.full((MAX_Z + 1,), -1, dtype=torch.long)
            index[torch.tensor(elements)] = torch.arange(len(elements))
            self.register_buffer("element_index", index, persistent=False)
            self.elements = elements
            attr_dim = len(elements)
            self.element_embedding = None
        else:
            self.elements = None
            attr_dim = int(element_dim)
            self.element_embedding = nn.Embedding(MAX_Z + 1, attr_dim)
            nn.init.normal_(self.element_embedding.weight)
        self.attr_irreps = o3.Irreps(f"{attr_dim}x0e")
        self.irreps_sh = o3.Irreps.spherical_harmonics(max_ell)
        self.irreps_a = natural_irreps(K, max_ell)
        hidden = natural_irreps(K, hidden_l)
        scalars = o3.Irreps(f"{K}x0e")
        self.embedding = o3.Linear(self.attr_irreps, scalars)
        self.sh = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        self.rbf = RadialBasis(num_bessel, cutoff, basis="bessel", envelope_name=None)
        layers, irreps_in = [], scalars
        for t in range(num_layers):
            irreps_out = scalars if t == num_layers - 1 else hidden
            layers.append(MACEInteraction(irreps_in, irreps_out, self.irreps_sh, self.irreps_a, self.attr_irreps,
                                          num_bessel, list(radial_mlp), correlation, fused,
                                          onehot=elements is not None, skip=t > 0))
            irreps_in = irreps_out
        self.layers = nn.ModuleList(layers)
        self.register_state_dict_post_hook(_drop_fx_constants)
        self.register_load_state_dict_post_hook(_ignore_missing_fx_constants)

    def attributes(self, z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Element attributes [N, attr_dim]: one-hot over ``elements`` or the learned embedding."""
        if self.element_embedding is not None:
            return self.element_embedding(z)
        idx = self.element_index[z]
        if idx.numel() and bool((idx < 0).any()):
            bad = sorted({int(v) for v in z[idx < 0]})
            raise ValueError(f"atomic numbers {bad} are not among this model's elements {self.elements}")
        return torch.nn.functional.one_hot(idx, len(self.elements)).to(dtype)

    def forward(self, z: torch.Tensor, graph: Graph, extra: torch.Tensor | None = None) -> BackboneOutput:
        dtype = graph.vec.dtype
        attr = self.attributes(z, dtype)
        h = self.embedding(attr) if extra is None else self.embedding(attr) + extra
        # r_ij = pos_i - pos_j (mace-torch's convention; graph.vec = pos_j - pos_i)
        edge_sh = self.sh(-graph.vec)
        env = polynomial_envelope(graph.dist, self.cutoff, p=self.envelope_exponent).unsqueeze(-1)
        edge_radial = self.rbf(graph.dist) * env
        K, layers = self.num_channels, []
        inv_avg = (1.0 / self.avg_num_neighbors).to(edge_radial.dtype)
        for layer in self.layers:
            h = layer(h, attr, edge_sh, edge_radial, graph.src, graph.dst, inv_avg)
            layers.append(h[:, :K])  # the K x 0e block comes first
        return BackboneOutput(features=torch.cat(layers, dim=-1), layer_features=layers)

    @torch.no_grad()
    def fit_data_statistics(self, dataset, indices: Sequence[int]) -> dict[str, float]:
        """Set ``avg_num_neighbors`` to the mean number of neighbours within the cutoff per atom over
        the structures ``indices`` of ``dataset`` (the training split): Σ edges / Σ atoms, with
        phizoo's own neighbour list. Returns ``{"avg_num_neighbors": value}``."""
        from ..nn.graph import build_graph

        edges = atoms = 0
        for i in indices:
            d = dataset[int(i)]
            pos = d.pos.to(torch.float64)
            cell, pbc = getattr(d, "cell", None), getattr(d, "pbc", None)
            if cell is None or pbc is None:
                cell = pbc = None
            else:
                cell, pbc = cell.reshape(1, 3, 3).to(torch.float64), pbc.reshape(1, 3).bool()
            g = build_graph(pos, torch.zeros(pos.shape[0], dtype=torch.long), self.cutoff, 1, cell=cell, pbc=pbc)
            edges += int(g.src.numel())
            atoms += pos.shape[0]
        if atoms == 0:
            raise ValueError("cannot fit avg_num_neighbors on an empty training split")
        value = max(edges / atoms, 1.0)  # an isolated atom still gets a finite normalisation
        self.avg_num_neighbors.fill_(value)
        return {"avg_num_neighbors": float(value)}
