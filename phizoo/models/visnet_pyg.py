"""Import of PyG's ViSNet weights: :func:`load_pyg_visnet_state` copies a
``torch_geometric.nn.models.ViSNet`` into a phizoo ``Potential`` with a ViSNet backbone
(``phizoo/models/visnet.py``), so that energies and forces agree to float64 round-off
(``tests/models/test_visnet.py``)."""
from __future__ import annotations

import torch
from torch import nn

from .visnet import ViSNet


@torch.no_grad()
def load_pyg_visnet_state(potential, pyg_model) -> None:
    """Copy a ``torch_geometric.nn.models.ViSNet`` into a phizoo ``Potential`` with a ViSNet backbone,
    so that ``potential(data)["energy"]`` equals PyG's ``y`` (and forces its ``-dy/dpos``).

    Mapping (PyG → phizoo), ``rep = pyg_model.representation_model``:

    ============================================  ====================================================
    ``rep.embedding``                              ``backbone.embedding`` (rows 0…max_z-1)
    ``rep.distance_expansion.{means,betas}``       ``backbone.rbf.{means,betas}``
    ``rep.neighbor_embedding.embedding``           ``backbone.nb_embedding`` (rows 0…max_z-1)
    ``rep.neighbor_embedding.distance_proj``       ``backbone.rbf_proj`` rows [0, F)
    ``rep.edge_embedding.edge_proj``               ``backbone.rbf_proj`` rows [F, 2F)
    ``rep.neighbor_embedding.combine``             ``backbone.combine``
    layer ``l``: ``layernorm``                     ``layers[l].layernorm``
    ``vec_layernorm.weight``                       ``layers[l].vec_weight`` (must be ones if not trainable)
    ``q_proj, k_proj, v_proj``                     ``layers[l].qkv`` (row blocks)
    ``dk_proj, dv_proj, f_proj``                   ``layers[l].edge_proj`` (row blocks; no f_proj in the last)
    ``vec_proj, w_trg_proj, w_src_proj``           ``layers[l].vec_proj`` (rows: vec_proj, w_trg, w_src)
    ``s_proj`` (bias must be 0)                    ``layers[l].s_proj``
    ``o_proj``                                     ``layers[l].o_proj``
    ``rep.out_norm``, ``rep.vec_out_norm.weight``  ``backbone.out_norm``, ``backbone.out_vec_weight``
    output block 0 ``vec1_proj, vec2_proj``        ``backbone.out_vec_proj`` (row blocks)
    output block 0 ``update_net[0], [2]``          ``backbone.out_mlp[0], [2]``
    output block 1 ``vec1_proj``                   ``backbone.out_norm_proj``
    output block 1 ``update_net[0]``               ``potential.head[0]``
    output block 1 ``update_net[2]`` (row 0)       ``potential.head[2]`` (row 1, the vector gate, is unused
                                                   for energies in PyG too)
    ``prior_model.atomref`` (Z < max_z)            ``potential.element_energies`` (other Z: 0)
    ``std``                                        ``potential.scale`` (``shift`` = 0, ``mean`` must be 0)
    ============================================  ====================================================
    """
    bb = potential.backbone
    rep = pyg_model.representation_model
    F = bb.hidden_channels
    if not isinstance(bb, ViSNet):
        raise TypeError("potential.backbone must be a phizoo ViSNet")
    checks = {
        "hidden_channels": (rep.hidden_channels, F), "num_layers": (rep.num_layers, len(bb.layers)),
        "num_heads": (rep.num_heads, bb.num_heads), "lmax": (rep.lmax, bb.lmax),
        "cutoff": (float(rep.cutoff), bb.cutoff), "num_rbf": (rep.num_rbf, bb.rbf.means.numel()),
    }
    for key, (theirs, ours) in checks.items():
        if theirs != ours:
            raise ValueError(f"{key} differs: PyG {theirs}, phizoo {ours}")
    if rep.vecnorm_type not in (None, "none"):
        raise NotImplementedError(f"vecnorm_type={rep.vecnorm_type!r} is not implemented in phizoo's ViSNet")
    if type(rep.vis_mp_layers[0]).__name__ != "ViS_MP":
        raise NotImplementedError("the vertex variant (ViS_MP_Vertex) is not implemented in phizoo's ViSNet")
    if float(pyg_model.mean) != 0.0:
        raise ValueError("PyG mean is added per molecule; phizoo's shift is per atom: only mean = 0 maps")
    head = potential.head
    if head[0].out_features != bb.half or head[0].in_features != bb.feature_dim:
        raise ValueError(f"the Potential head must be {bb.feature_dim} -> {bb.half} -> 1 (head_hidden = F // 2)")

    def cp(dst, src):
        dst.copy_(src.to(dst))

    def cp_linear(dst: nn.Linear, *srcs: nn.Linear, rows=None):
        w = torch.cat([s.weight for s in srcs], dim=0)
        cp(dst.weight if rows is None else dst.weight[rows], w)
        if dst.bias is not None:
            b = torch.cat([s.bias for s in srcs], dim=0)
            cp(dst.bias if rows is None else dst.bias[rows], b)

    def cp_vecnorm(ours, theirs):
        if ours is None:
            if not torch.all(theirs.weight == 1):
                raise ValueError("PyG vector-norm weight is not one: build phizoo with trainable_vecnorm=True")
        else:
            cp(ours, theirs.weight)

    maxz = rep.embedding.num_embeddings
    for table in (bb.embedding, bb.nb_embedding):
        table.weight.zero_()
    cp(bb.embedding.weight[:maxz], rep.embedding.weight)
    cp(bb.nb_embedding.weight[:maxz], rep.neighbor_embedding.embedding.weight)
    cp(bb.rbf.means, rep.distance_expansion.means)
    cp(bb.rbf.betas, rep.distance_expansion.betas)
    cp_linear(bb.rbf_proj, rep.neighbor_embedding.distance_proj, rep.edge_embedding.edge_proj)
    cp_linear(bb.combine, rep.neighbor_embedding.combine)
    for ours, theirs in zip(bb.layers, rep.vis_mp_layers):
        if theirs.s_proj.bias is not None and bool(theirs.s_proj.bias.ne(0).any()):
            raise ValueError("PyG s_proj has a non-zero bias: phizoo's ViSNet has none (it would break "
                             "smoothness at the cutoff); see the README, ViSNet section")
        cp(ours.layernorm.weight, theirs.layernorm.weight)
        cp(ours.layernorm.bias, theirs.layernorm.bias)
        cp_vecnorm(ours.vec_weight, theirs.vec_layernorm)
        cp_linear(ours.qkv, theirs.q_proj, theirs.k_proj, theirs.v_proj)
        edge_srcs = [theirs.dk_proj, theirs.dv_proj] + ([] if ours.last_layer else [theirs.f_proj])
        cp_linear(ours.edge_proj, *edge_srcs)
        vec_srcs = [theirs.vec_proj] + ([] if ours.last_layer else [theirs.w_trg_proj, theirs.w_src_proj])
        cp_linear(ours.vec_proj, *vec_srcs)
        cp(ours.s_proj.weight, theirs.s_proj.weight)
        cp_linear(ours.o_proj, theirs.o_proj)
    cp(bb.out_norm.weight, rep.out_norm.weight)
    cp(bb.out_norm.bias, rep.out_norm.bias)
    cp_vecnorm(bb.out_vec_weight, rep.vec_out_norm)
    blk0, blk1 = pyg_model.output_model.output_network
    cp_linear(bb.out_vec_proj, blk0.vec1_proj, blk0.vec2_proj)
    cp_linear(bb.out_mlp[0], blk0.update_net[0])
    cp_linear(bb.out_mlp[2], blk0.update_net[2])
    cp_linear(bb.out_norm_proj, blk1.vec1_proj)
    cp_linear(head[0], blk1.update_net[0])
    cp(head[2].weight, blk1.update_net[2].weight[:1])
    cp(head[2].bias, blk1.update_net[2].bias[:1])
    potential.element_energies.zero_()
    atomref = pyg_model.prior_model.atomref.weight[:, 0] if pyg_model.prior_model is not None else None
    if atomref is not None:
        cp(potential.element_energies[: atomref.numel()], atomref)
    cp(potential.scale, pyg_model.std)
    potential.shift.zero_()
