"""MPOP: frozen central tensors and dimension squeezing."""

import pytest

torch = pytest.importorskip("torch")
from nn_helpers import train_steps  # noqa: E402
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402


def test_frozen_central_tensor_does_not_move():
    layer = tn.MPOLinear(64, 64, bond_dim=8, out_dims=(4, 4, 4), in_dims=(4, 4, 4))
    c = tn.central_index(layer)
    assert c == 1
    total = sum(p.numel() for p in layer.parameters())
    left = tn.freeze_central(layer)
    assert left == total - layer.cores[1].numel()
    before = [p.detach().clone() for p in layer.cores]
    teacher = nn.Linear(64, 64)

    def batch():
        x = torch.randn(32, 64)
        return x, teacher(x).detach()

    train_steps(layer, batch, steps=5)
    assert torch.equal(layer.cores[1], before[1])
    assert not torch.equal(layer.cores[0], before[0]) and not torch.equal(layer.cores[2], before[2])
    lstm = tn.MPOLSTM(8, 8, num_cores=3, bond_dim=4)
    tn.freeze_central(lstm)
    assert [p.requires_grad for p in lstm.cores_ih_l0] == [True, False, True]
    with pytest.raises(ValueError, match=r"holds no MPO layer"):
        tn.freeze_central(nn.Linear(2, 2))


def test_dimension_squeezing_keeps_training():
    lin = nn.Linear(64, 64)
    layer = tn.MPOLinear.from_linear(lin, out_dims=(4, 4, 4), in_dims=(4, 4, 4))
    tn.freeze_central(layer)
    squeezer = tn.DimensionSqueezer(layer, {0: 12, 3: 8})
    teacher = nn.Linear(64, 64)
    opt = torch.optim.Adam([p for p in layer.parameters() if p.requires_grad], lr=1e-3)
    for step in range(6):
        bond = squeezer.step()
        x = torch.randn(16, 64)
        loss = ((layer(x) - teacher(x).detach()) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert bond == 8 and max(layer.mpo.canonicalize(0).truncate(tnlib.Truncation(cutoff=1e-6)).bond_dims) <= 8
    eff = [c.detach() for c in layer.effective_cores()]
    assert float(eff[0][..., 8:].abs().sum()) == 0.0 and float(eff[1][8:].abs().sum()) == 0.0


def test_squeezer_schedule_caps_are_checked():
    layer = tn.MPOLinear(16, 16, bond_dim=4)
    for bad in (0, -2):
        with pytest.raises(ValueError, match=r"schedule\[3\]=-?\d is invalid; expected an int >= 1"):
            tn.DimensionSqueezer(layer, {3: bad})
    for bad in (2.5, True, "4"):
        with pytest.raises(TypeError, match=r"schedule\[3\] must be an int"):
            tn.DimensionSqueezer(layer, {3: bad})
    squeezer = tn.DimensionSqueezer(layer, lambda t: 0 if t == 1 else None)
    squeezer.step()
    with pytest.raises(ValueError, match=r"schedule\(1\)=0 is invalid"):
        squeezer.step()


@pytest.mark.parametrize("cell_type", ["MPOLSTMCell", "MPOGRUCell"])
def test_mpop_covers_mpo_cells(cell_type):
    """freeze_central and DimensionSqueezer reach the cells' weights too (they used to skip them silently)."""
    torch.manual_seed(0)
    cell = getattr(tn, cell_type)(16, 16, bond_dim=6, num_cores=3)
    model = nn.ModuleDict({"cell": cell, "head": nn.Linear(16, 2)})
    tn.freeze_central(model)
    for name in cell.mpo_names():
        cores = getattr(cell, name)
        c = tn.central_index(list(cores))
        assert [p.requires_grad for p in cores] == [k != c for k in range(len(cores))]
    x = torch.randn(5, 16)
    before = cell.mpo("cores_hh").canonicalize(tn.central_index(list(cell.cores_hh))).truncate(
        tnlib.Truncation(max_bond=2)
    )
    tn.DimensionSqueezer(model, {0: 2}).step()
    assert set(cell.bond_masks) == {"cores_ih", "cores_hh"}
    assert all(int(m.sum()) <= 2 for masks in cell.bond_masks.values() for m in masks)
    squeezed = cell.mpo("cores_hh")
    assert torch.allclose(squeezed.to_matrix(), before.to_matrix(), atol=1e-5)
    with torch.no_grad():
        out = cell(x)
    h = out[0] if isinstance(out, tuple) else out
    dense = cell.to_dense()
    ref = dense(x)
    ref_h = ref[0] if isinstance(ref, tuple) else ref
    assert torch.allclose(h, ref_h, atol=1e-5)  # the forward pass uses the masked (squeezed) weights
