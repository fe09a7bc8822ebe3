"""The Potential's energy readouts: ``mlp`` (one MLP on the concatenated layer scalars) and
``per_layer`` (mace-torch's: a linear readout per layer, the MLP on the last layer's scalars)."""
import pytest
import torch

import phizoo
from phizoo.nn.graph import build_graph
from phizoo.registry import build_from_spec
from phizoo.train.finetune import prepare_for_finetuning
from tests.molecules import batch, random_molecule


@pytest.mark.parametrize("name", phizoo.list_models())
def test_per_layer_readout_is_the_sum_of_layer_readouts(name):
    torch.manual_seed(0)
    model = phizoo.build_model(name, preset="test", readout="per_layer", dtype=torch.float64)
    assert len(model.layer_readouts) == len(model.backbone.layer_feature_dims) - 1 >= 1
    with torch.no_grad():
        model.scale.fill_(1.3)
        model.shift.fill_(-0.2)
    mols = batch(random_molecule(7, seed=1), random_molecule(5, seed=2))
    got = model(mols, compute_forces=False)["energy"]
    graph = build_graph(mols.pos, mols.batch, model.cutoff, 2, dtype=torch.float64)
    layers = model.backbone(mols.z, graph).layer_features
    eps = model.head(layers[-1])[:, 0] + sum(lin(h)[:, 0] for lin, h in zip(model.layer_readouts, layers))
    want = torch.zeros(2, dtype=torch.float64).index_add_(0, mols.batch, eps * 1.3 - 0.2)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)


def test_readout_travels_with_the_spec_and_loads_strictly():
    model = phizoo.build_model("painn", preset="test", readout="per_layer")
    assert model.spec["potential"]["readout"] == "per_layer"
    rebuilt = build_from_spec(model.spec)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    with pytest.raises(RuntimeError, match="layer_readouts"):  # the MLP readout has no such weights
        phizoo.build_model("painn", preset="test", readout="mlp").load_state_dict(model.state_dict(), strict=True)


def test_unknown_readout_is_refused():
    with pytest.raises(ValueError, match="readout must be 'mlp' or 'per_layer', got 'sum'"):
        phizoo.build_model("painn", preset="test", readout="sum")


def test_reset_head_resets_every_readout():
    torch.manual_seed(0)
    model = phizoo.build_model("painn", preset="test", readout="per_layer")
    with torch.no_grad():
        for p in [*model.head.parameters(), *model.layer_readouts.parameters()]:
            p.fill_(7.0)
    prepare_for_finetuning(model, reset_head=True)
    for p in [*model.head.parameters(), *model.layer_readouts.parameters()]:
        assert not torch.all(p == 7.0)
