"""The registry of layer kinds: every part of tnlib.nn reads it, and a new kind is one registration."""

import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402
from tnlib._legs import cores_to_matrix  # noqa: E402
from tnlib.nn._convert._calibration import record_input  # noqa: E402
from tnlib.nn._layers._cores import masked, mpo_cores, parameter_list  # noqa: E402
from tnlib.nn._layers._kinds import LayerKind, Source, kind_of_layer, kinds, register, sources  # noqa: E402


class Affine(nn.Module):
    """A dense layer tnlib does not ship: y = x W^T, W (out, in), not an nn.Linear."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in, dtype=torch.float64) / math.sqrt(n_in))

    def forward(self, x):
        return x @ self.weight.T


class MPOAffine(nn.Module):
    """Its MPO layer: the whole of a new kind is this class and the registration below."""

    def __init__(self, mpo=None, like=None):
        super().__init__()
        if mpo is not None:
            self.out_features, self.in_features = like.shape
            self.out_dims, self.in_dims = tuple(mpo.out_dims), tuple(mpo.in_dims)
            self.cores = parameter_list(mpo_cores(mpo, tuple(like.shape), like, "mpo"))
            self.bond_masks = None

    def forward(self, x):
        w = cores_to_matrix(masked(list(self.cores), self.bond_masks))
        return x @ w.T


register(LayerKind(
    MPOAffine,
    (Source("Affine", lambda m: type(m) is Affine, lambda m, mpos: MPOAffine(mpos["weight"], m.weight.detach()),
            "Affine", record=record_input),),
    ("in_features", "out_features", "out_dims", "in_dims"),
    (),
    lambda layer: torch.zeros(1, layer.in_features, dtype=layer.cores[0].dtype),
))


def test_a_new_kind_compresses_calibrates_saves_freezes_and_squeezes(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(Affine(64, 64), nn.Tanh(), Affine(64, 16))
    x = torch.randn(256, 64, dtype=torch.float64)
    small, reports = tn.compress(model, compression=3, calibration=[x[:128], x[128:]])
    assert [r.kind for r in reports] == ["Affine", "Affine"]
    assert isinstance(small[0], MPOAffine) and small[0].cores[0].dtype == torch.float64
    assert all(r.output_error is not None for r in reports)
    with pytest.raises(TypeError, match=r"only Affine, nn.Conv1d .* can be compressed"):
        tn.compress(nn.Sequential(nn.ReLU()), compression=2, layers=["0"])
    grams = tn.record_grams(model, ["0"], [x])
    assert grams["0"]["weight"].shape == (64, 64)
    path = tmp_path / "affine.safetensors"
    tn.save(small, path)
    back = tn.load(path, model=nn.Sequential(Affine(64, 64), nn.Tanh(), Affine(64, 16)))
    assert torch.equal(back(x), small(x))
    left = tn.freeze_central(small)
    assert left < sum(p.numel() for p in small.parameters())
    squeezer = tn.DimensionSqueezer(small, {0: 2})
    squeezer.step()
    assert all(int(m.sum()) <= 2 for m in small[0].bond_masks)


def test_every_kind_is_listed_where_users_read_about_kinds():
    from tnlib.nn._convert._compress import SUPPORTED

    doc = tn.LayerReport.__doc__
    for source, kind in sources():
        if kind.layer is MPOAffine:
            continue
        assert f'``"{source.kind}"``' in doc, source.kind
        assert source.supported in SUPPORTED
        assert kind.layer.__name__ in tn.__all__
    assert {k.layer for k in kinds()} >= {tn.MPOLinear, tn.MPOLSTM, tn.MPOGRU, tn.MPOLSTMCell, tn.MPOGRUCell,
                                          tn.MPOConv1d, tn.MPOConv2d, tn.MPOEmbedding, tn.MPOMultiheadAttention}


def test_registering_a_kind_twice_is_refused():
    with pytest.raises(ValueError, match="MPOAffine is registered already"):
        register(kind_of_layer(MPOAffine(None)))
    with pytest.raises(ValueError, match=r"source kind\(s\) \['Linear'\] are registered already"):
        register(LayerKind(nn.Identity, (Source("Linear", lambda m: False, lambda m, mpos: m, "x"),), (), (),
                           lambda layer: torch.zeros(1)))


@pytest.mark.parametrize("make", [
    lambda: tn.MPOConv2d.from_conv2d(nn.Conv2d(16, 32, 3), tnlib.Truncation(max_bond=12)),
    lambda: tn.MPOConv1d.from_conv1d(nn.Conv1d(16, 32, 3), tnlib.Truncation(max_bond=12)),
    lambda: tn.MPOEmbedding.from_embedding(nn.Embedding(256, 32), tnlib.Truncation(max_bond=12)),
])
def test_mpop_freezes_and_squeezes_convolutions_and_embeddings(make):
    torch.manual_seed(0)
    layer = make()
    before = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    assert tn.freeze_central(layer) < before
    dense = layer.mpo.truncate(tnlib.Truncation(max_bond=4)).to_matrix()
    tn.DimensionSqueezer(layer, {0: 4}).step()
    assert [int(m.sum()) for m in layer.bond_masks] == [min(4, int(c.shape[3])) for c in list(layer.cores)[:-1]]
    got = layer.mpo.to_matrix()  # the squeezed cores: zero beyond the cut
    assert float(torch.linalg.norm(got - dense)) <= 1e-3 * float(torch.linalg.norm(dense))  # float32 SVDs
    with torch.no_grad():  # a core that regrows beyond the cut (as a training step may do) is masked in forward
        for c in layer.cores:
            c.add_(0.1)
        masked_out = layer.to_embedding().weight if isinstance(layer, tn.MPOEmbedding) else layer.kernel()
        rows = masked_out.reshape(masked_out.shape[0], -1)
        kept = tnlib.MPO([c.detach() for c in masked(list(layer.cores), layer.bond_masks)]).to_matrix()
        assert torch.allclose(rows, kept, atol=1e-5)
        assert tnlib.MPO([c.detach() for c in layer.cores]).to_matrix().shape == kept.shape
