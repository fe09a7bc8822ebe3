r"""MACE-like backbone on e3nn (Batatia, Kovács, Simm, Ortner, Csányi, NeurIPS 2022,
"MACE: Higher Order Equivariant Message Passing Neural Networks", arXiv:2206.07697).

Per atom ``i`` and layer ``t`` the features ``h`` are e3nn irreps: ``K x 0e`` after the
embedding, ``K x (0e + 1o + ... + L_hidden)`` between layers (natural parity, as mace-torch's
``128x0e+128x1o``), ``K x 0e`` after the last layer (only scalars are read). One layer:

1. one-particle basis (the paper's eq. 8)::

       A_i = Linear( Σ_j  TP_uvu( W h_j ,  Y(r̂_ij) ;  R(r_ij) ) ) / avg_num_neighbors

   ``Y`` = real spherical harmonics up to ``max_ell`` (e3nn, component normalisation),
   ``R`` = radial MLP (e3nn ``FullyConnectedNet``, no biases) on Bessel functions times the
   polynomial envelope, one weight per channel and coupling path ``(l1, l2) -> l3``. Every path
   keeps its own slot until the ``Linear`` after aggregation (mace-torch's ``irreps_mid``;
   ``separate_paths=False`` sums the paths into each ``l3`` on the edge, as in the paper's eq. 8:
   less memory, a few per cent less accurate in the parity runs). ``A`` has irreps
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

Readout (in ``Potential``; the presets set ``readout: per_layer``, mace-torch's): a linear readout
of each layer's scalars but the last plus a bias-free MLP on the last. ``features`` = the scalars of
every layer concatenated, ``layer_features`` = each layer's scalars (readout and Φ-Module input).

Evaluation: the e3nn tensor products define the functions; by default (``fused=True``) they are
evaluated by :class:`EdgeTensorProduct` and :class:`ChannelwiseTP` in a cheaper order, with
e3nn's Clebsch-Gordan tensors and path weights, in an irrep-major layout ``[N, Σ(2l+1), K]``
(equal to e3nn's result to rounding; tests/models/test_mace.py). See docs/models/mace.md.

Code: this module (the backbone), ``mace_blocks.py`` (:class:`SymmetricProductBasis`,
:class:`MACEInteraction`), ``phizoo/nn/fused_tp.py`` (:class:`ChannelwiseTP`,
:class:`EdgeTensorProduct`, the irrep-major layout).
"""
from __future__ import annotations

from typing import Sequence

import torch
from e3nn import o3
from torch import nn

from ..nn.graph import Graph
from ..nn.radial import RadialBasis, polynomial_envelope
from ..registry import register_model
from .backbone import Backbone, BackboneOutput
from .mace_blocks import MACEInteraction, natural_irreps
from .potential import MAX_Z


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
        fused: evaluate the tensor products with phizoo's fused kernels (``False``: e3nn's own).
        separate_paths: keep the edge coupling paths apart until the linear after aggregation.
        path_scaling: ``"init"`` puts the product basis' per-order normalisation into the initial
            weights (mace-torch's parameterisation), ``"constant"`` into fixed path weights.
    """

    # specs saved before these options existed: edge paths summed, path normalisation as constants
    legacy_spec_values = {"separate_paths": False, "path_scaling": "constant"}

    def __init__(self, num_channels: int = 128, max_ell: int = 3, hidden_l: int = 1, correlation: int = 3,
                 num_layers: int = 2, num_bessel: int = 8, cutoff: float = 5.0, envelope_exponent: int = 5,
                 radial_mlp: Sequence[int] = (64, 64, 64), avg_num_neighbors: float = 10.0,
                 elements: Sequence[int] | None = None, element_dim: int = 16, fused: bool = True,
                 separate_paths: bool = True, path_scaling: str = "init"):
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
                                          onehot=elements is not None, skip=t > 0, separate_paths=separate_paths,
                                          path_scaling=path_scaling))
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
