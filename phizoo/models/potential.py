r"""A potential = backbone + energy head (+ Φ head) (+ Coulomb head) + per-element references.

Energy per molecule (eV):

    E = Σ_i [scale · ε_i + shift] + γ E_ES + E_Coulomb  +  Σ_i E_ref(z_i)
        \_______________ model dtype ________________/     \__ float64 __/

The learned part is computed in the model's dtype (float32 or float64); the element
references stay in float64 whatever ``.to(dtype)`` is called, and ``energy`` is returned
in float64 so large total energies keep their precision. Forces are ``-∂E/∂pos`` by
autograd and include the Φ term.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch_geometric.utils import scatter

from ..nn.graph import build_graph
from ..nn.mlp import mlp
from ..validate import check_edge_distances
from .backbone import Backbone
from .charge_spin import ChargeSpinEmbedding, resolve_charge_spin
from .periodic import apply_strain, cell_inputs, stress_from_strain_grad

MAX_Z = 118


class InputError(ValueError):
    """Raised for malformed model input (names the field and the problem)."""


def _check_input(z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor, max_z: int) -> None:
    if z.dim() != 1:
        raise InputError(f"z must be a 1-D tensor of atomic numbers, got shape {tuple(z.shape)}")
    if pos.shape != (z.shape[0], 3):
        raise InputError(f"pos must have shape [N, 3] = [{z.shape[0]}, 3], got {tuple(pos.shape)}")
    if batch.shape != z.shape:
        raise InputError(f"batch must have shape [{z.shape[0]}], got {tuple(batch.shape)}")
    if z.numel() == 0:
        raise InputError("empty structure: no atoms (z and pos have 0 rows)")
    if z.numel() and (int(z.min()) < 1 or int(z.max()) > max_z):
        bad = int(((z < 1) | (z > max_z)).nonzero()[0, 0])
        raise InputError(f"atom {bad} has atomic number {int(z[bad])}, outside 1..{max_z}")
    if not bool(torch.isfinite(pos).all()):
        bad = int((~torch.isfinite(pos)).any(-1).nonzero()[0, 0])
        raise InputError(f"atom {bad} has a non-finite position {pos[bad].tolist()}")


class Potential(nn.Module):
    """Energy (eV), forces (eV/Å) and, with Φ, potentials and charges for a PyG batch.

    Args:
        backbone: a ``Backbone``.
        phi: a Φ head (``phizoo.heads.phi.module.build_phi``) or ``None``.
        spec: how to rebuild this model (registry name and hyperparameters); saved with weights.
        head_hidden: hidden width of the energy MLP. readout: ``"mlp"`` (ε_i = MLP of the
            concatenated layer scalars) or ``"per_layer"`` (mace-torch's: a linear readout per layer
            plus a bias-free MLP on the last layer's scalars, summed).
    """

    def __init__(self, backbone: Backbone, phi: nn.Module | None = None, spec: dict[str, Any] | None = None,
                 head_hidden: int | None = None, neighbor_backend: str = "auto", charge_spin: bool = False,
                 coulomb: nn.Module | None = None, readout: str = "mlp"):
        super().__init__()
        self.backbone = backbone
        self.phi = phi
        self.coulomb = coulomb  # phizoo.heads.coulomb.CoulombHead or None (then no state-dict entries)
        # readout "mlp": ε_i = MLP(concatenated layer scalars); "per_layer" (mace-torch's): one linear
        # readout per layer but the last, a bias-free MLP on the last, ε_i = Σ_{t<T} w_t·h_t + MLP(h_T)
        if readout not in ("mlp", "per_layer"):
            raise ValueError(f"readout must be 'mlp' or 'per_layer', got {readout!r}")
        self.readout = readout
        dims = list(backbone.layer_feature_dims)
        if readout == "mlp":
            self.head = mlp([backbone.feature_dim, head_hidden or max(backbone.feature_dim // 2, 1), 1])
            self.layer_readouts = nn.ModuleList()
        else:
            self.head = mlp([dims[-1], head_hidden or max(dims[-1] // 2, 1), 1], bias=False)
            self.layer_readouts = nn.ModuleList(nn.Linear(d, 1, bias=False) for d in dims[:-1])
            linears = [m for m in [*self.layer_readouts, *self.head] if isinstance(m, nn.Linear)]
            for lin in linears:  # e3nn's o3.Linear init: N(0, 1/fan_in)
                nn.init.normal_(lin.weight, std=lin.in_features ** -0.5)
        self.spec = dict(spec or {})
        self.neighbor_backend = neighbor_backend
        # total charge / spin input (models/charge_spin.py); absent (no parameters) when off
        self.charge_spin = ChargeSpinEmbedding(backbone.embedding_dim) if charge_spin else None
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("shift", torch.tensor(0.0))
        self.register_buffer("element_energies", torch.zeros(MAX_Z + 1, dtype=torch.float64))

    @property
    def cutoff(self) -> float:
        return self.backbone.cutoff

    @property
    def dtype(self) -> torch.dtype:
        return self.scale.dtype

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self._buffers["element_energies"] = self._buffers["element_energies"].to(torch.float64)
        return self

    def atomic_output(self, out) -> torch.Tensor:
        """ε_i [N] (before scale and shift) from the backbone's output."""
        if self.readout == "mlp":
            return self.head(out.features).squeeze(-1)
        eps = self.head(out.layer_features[-1]).squeeze(-1)
        for lin, h in zip(self.layer_readouts, out.layer_features[:-1]):
            eps = eps + lin(h).squeeze(-1)
        return eps

    def forward(self, data, compute_forces: bool = True, create_graph: bool | None = None,
                compute_stress: bool = False) -> dict[str, torch.Tensor]:
        """Run the model on a torch_geometric ``Data``/``Batch``.

        Reads ``z`` [N] long, ``pos`` [N, 3] Å, ``batch`` [N] (optional) and ``total_charge`` [B]
        (optional, e, default 0). Returns a dict:
            energy [B] float64 eV (with element references), forces [N, 3] eV/Å,
            and with Φ: phi [N], charges [N] e, electrostatic_energy [B] eV,
            charge_error [B] (Σρ - Q) and, for the paper formulation, pde_residual [B]
            (mean (Lφ-ρ)² per molecule); with the Coulomb head (phizoo/heads/coulomb.py):
            coulomb_charges [N] e (also ``charges`` when there is no Φ), coulomb_energy [B] eV,
            dipole [B, 3] e·Å. With any long-range head also energy_short_range [B] eV, so that
            energy = energy_short_range + electrostatic_energy + coulomb_energy + Σ E_ref(z_i).
        ``create_graph`` defaults to ``self.training`` (needed to train on forces).

        Periodic structures: ``cell`` [B, 3, 3] Å and ``pbc`` [B, 3] (models/periodic.py); with
        ``compute_stress`` also ``stress`` [B, 3, 3] eV/Å³ = (1/V) ∂E/∂ε (ASE's sign).
        ``spin`` [B] (multiplicity, optional) and ``total_charge`` are checked (models/charge_spin.py)
        and fed to a ``charge_spin`` model. Interatomic vectors are formed in float64 from the
        positions as given (keep them float64 far from the origin), then cast to the model dtype.
        """
        z = data.z.long()
        pos = data.pos
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.zeros_like(z)
        _check_input(z, pos, batch, MAX_Z)
        num_graphs = int(batch.max()) + 1 if batch.numel() else 0
        cell, pbc = cell_inputs(data, num_graphs)
        if compute_stress and cell is None:
            raise InputError("stress needs a periodic structure (Data.cell and Data.pbc)")
        q, spin = resolve_charge_spin(data, z, batch, num_graphs, accepts_charge=self.charge_spin is not None
                                      or bool(getattr(self.phi, "net_charge", False)) or self.coulomb is not None,
                                      accepts_spin=self.charge_spin is not None)
        if compute_forces and not pos.requires_grad:
            pos = pos.detach().requires_grad_(True)
        gpos, gcell = pos, cell
        if compute_stress:
            gpos, gcell, strain = apply_strain(pos, cell, batch)
        graph = build_graph(gpos, batch, self.cutoff, num_graphs, backend=self.neighbor_backend, cell=gcell,
                            pbc=pbc, dtype=self.dtype)
        # atoms closer than 0.1 Å (coincident: NaN edge directions): refused, from the graph we have
        check_edge_distances(graph.edge_index, graph.dist, batch, error=InputError)
        if self.charge_spin is None:
            out = self.backbone(z, graph)
        else:
            out = self.backbone(z, graph, extra=self.charge_spin(q, spin, batch))
        atomic = self.atomic_output(out) * self.scale + self.shift
        energy = atomic_energy = scatter(atomic, batch, dim=0, dim_size=num_graphs, reduce="sum")
        result: dict[str, torch.Tensor] = {}
        if self.phi is not None:
            q = q.to(energy)
            po = self.phi(out.layer_features, graph, total_charge=q)
            energy = energy + po.energy
            result.update(phi=po.phi, charges=po.charges, electrostatic_energy=po.energy,
                          charge_error=po.total_charge - q)
            if po.pde_residual is not None:
                result["pde_residual"] = po.pde_residual
        if self.coulomb is not None:  # real electrostatics of per-atom charges (phizoo/heads/coulomb.py)
            co = self.coulomb(out.features, gpos, batch, num_graphs, q, gcell, pbc, result.get("charges"),
                              graph=graph, graph_cutoff=self.cutoff)
            energy = energy + co.energy
            result.update(coulomb_charges=co.charges, coulomb_energy=co.energy, dipole=co.dipole)
            result.setdefault("charges", co.charges)
        if self.phi is not None or self.coulomb is not None:
            result["energy_short_range"] = atomic_energy
        refs = scatter(self.element_energies[z], batch, dim=0, dim_size=num_graphs, reduce="sum")
        result["energy"] = energy.to(torch.float64) + refs
        if compute_forces or compute_stress:
            create = self.training if create_graph is None else create_graph
            inputs = ((pos,) if compute_forces else ()) + ((strain,) if compute_stress else ())
            grads = torch.autograd.grad(energy.sum(), inputs, create_graph=create, allow_unused=True)
            if compute_forces:
                grad = grads[0]
                result["forces"] = (-grad if grad is not None else torch.zeros_like(pos)).to(self.dtype)
            if compute_stress:
                result["stress"] = stress_from_strain_grad(grads[-1], cell, pbc)
            if not create:  # the graph is spent: hand back plain tensors
                result = {k: v.detach() for k, v in result.items()}
        return result

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
