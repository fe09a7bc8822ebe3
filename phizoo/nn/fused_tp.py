r"""Fused evaluation of e3nn tensor products in an irrep-major layout ``[N, Σ_l (2l+1), K]``.

The e3nn ``o3.TensorProduct`` modules define the functions; :class:`ChannelwiseTP` (channel-wise
``"uuu"`` products) and :class:`EdgeTensorProduct` (the ``"uvu"`` edge product summed into the
target nodes) evaluate them in a cheaper order, with e3nn's Clebsch-Gordan tensors and path
weights, equal to e3nn's result to rounding (tests/models/test_mace.py). Used by the MACE
backbone (``phizoo/models/mace.py``, ``mace_blocks.py``); :func:`to_ir_mul` / :func:`from_ir_mul`
convert between e3nn's layout and the irrep-major one.
"""
from __future__ import annotations

import torch
from e3nn import o3
from torch import nn
from torch_geometric.utils import scatter


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

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_out: o3.Irreps, fused: bool = True,
                 separate_paths: bool = False):
        super().__init__()
        self.K = irreps_in[0].mul
        self.fused = fused
        targets = {ir: i for i, (_, ir) in enumerate(irreps_out)}
        paths = [(i1, i2, ir) for i1, (_, ir1) in enumerate(irreps_in) for i2, (_, ir2) in enumerate(irreps_sh)
                 for ir in ir1 * ir2 if ir in targets]
        if separate_paths:  # one output slot per path (mace-torch's irreps_mid), in path order
            irreps_out = o3.Irreps([(self.K, ir) for _, _, ir in paths])
            instr = [(i1, i2, p, "uvu", True) for p, (i1, i2, _) in enumerate(paths)]
        else:
            instr = [(i1, i2, targets[ir], "uvu", True) for i1, i2, ir in paths]
        self.irreps_in, self.irreps_sh, self.irreps_out = irreps_in, irreps_sh, irreps_out
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
