"""Whole-model compression."""

import copy

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tnlib  # noqa: E402
import tnlib.nn as tn  # noqa: E402


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def test_compress_whole_model_from_state_dict(tmp_path):
    net = Net()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    loaded = Net()
    loaded.load_state_dict(torch.load(tmp_path / "net.pt"))
    with pytest.warns(UserWarning, match=r"an exact conversion is larger; pass compression= or a truncation"):
        exact, reports = tn.compress(loaded, tnlib.Truncation(), num_cores=2)
    x = torch.randn(3, 5, 8)
    assert torch.allclose(exact(x), net(x), atol=1e-5)
    assert isinstance(exact.rnn, tn.MPOLSTM) and isinstance(exact.head, tn.MPOLinear)
    assert isinstance(loaded.rnn, nn.LSTM)  # not in place
    assert [r.name for r in reports] == ["rnn", "head"] and all(r.relative_error < 1e-6 for r in reports)
    small, reports = tn.compress(loaded, compression=4, layers=["rnn"], num_cores=2)
    assert reports[0].compression_ratio >= 4 and isinstance(small.head, nn.Linear)
    same = copy.deepcopy(loaded)
    with pytest.warns(UserWarning, match=r"an exact conversion is larger"):
        out, _ = tn.compress(same, tnlib.Truncation(), inplace=True, layers=["head"])
    assert out is same and isinstance(same.head, tn.MPOLinear)


def test_compress_errors():
    with pytest.raises(ValueError, match=r"layers names 'nope', which is not a module"):
        tn.compress(Net(), layers=["nope"])
    with pytest.raises(TypeError, match=r"layer '' is a Net"):
        tn.compress(Net(), layers=[""])
    with pytest.raises(ValueError, match=r"compression=0.5 is invalid"):
        tn.compress(Net(), compression=0.5)


class Recurrent(nn.Module):
    """A model with every supported layer type, cells run in the model's own loop."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(12, 16, num_layers=2, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(32, 16, batch_first=True)
        self.cell = nn.LSTMCell(16, 16)
        self.gcell = nn.GRUCell(16, 16)
        self.head = nn.Linear(16, 16)

    def forward(self, x):
        y, _ = self.lstm(x)
        y, _ = self.gru(y)
        h = c = g = torch.zeros(x.shape[0], 16)
        for t in range(y.shape[1]):
            h, c = self.cell(y[:, t], (h, c))
            g = self.gcell(h, g)
        return self.head(g)


def batches(n=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 7, 12, generator=gen) for _ in range(n)]


def test_compress_every_recurrent_kind_meets_the_budget_and_runs():
    model = Recurrent()
    small, reports = tn.compress(model, compression=4)
    kinds = {r.name: r.kind for r in reports}
    assert kinds == {"lstm": "LSTM", "gru": "GRU", "cell": "LSTMCell", "gcell": "GRUCell", "head": "Linear"}
    assert isinstance(small.cell, tn.MPOLSTMCell) and isinstance(small.gru, tn.MPOGRU)
    for r in reports:
        assert r.params_after <= r.budget and r.compression_ratio >= 4
        assert (r.note != "") == (r.params_after < 0.95 * r.budget)
    assert small(batches(1)[0]).shape == (8, 16)


def test_compress_exact_for_every_kind():
    model = Recurrent()
    with pytest.warns(UserWarning, match=r"an exact conversion is larger"):
        exact, reports = tn.compress(model, tnlib.Truncation(), num_cores=2)
    x = batches(1)[0]
    assert torch.allclose(exact(x), model(x), atol=1e-5)
    assert all(r.relative_error < 1e-6 for r in reports)


def weight_pairs(model, small, kinds=("lstm", "gru", "cell", "gcell", "head")):
    for name in kinds:
        dense = dict(model.named_modules())[name]
        mpo_layer = dict(small.named_modules())[name]
        for wname, w in dense.named_parameters():
            if not wname.startswith("weight"):
                continue
            if isinstance(mpo_layer, tn.MPOLinear):
                approx = mpo_layer.dense_weight()
            else:
                core_name = "cores_" + wname.removeprefix("weight_")
                approx = mpo_layer.mpo(core_name).to_matrix()
            yield name, wname, w.detach().double(), approx.detach().double()


def test_calibration_fits_outputs_better_than_weights():
    torch.manual_seed(0)
    model = Recurrent()
    data = batches(8)
    plain, _ = tn.compress(model, compression=4)
    aware, reports = tn.compress(model, compression=4, calibration=data)
    grams = tn.record_grams(model, ["lstm", "gru", "cell", "gcell", "head"], data)
    for (name, wname, w, a_plain), (_, _, _, a_aware) in zip(weight_pairs(model, plain), weight_pairs(model, aware)):
        C = grams[name][wname]
        err = lambda a: float(torch.sum((w - a) * ((w - a) @ C)) / torch.sum(w * (w @ C)))  # noqa: E731
        assert err(a_aware) <= err(a_plain) * (1 + 1e-6) + 1e-12, (name, wname)
    by_name = {r.name: r for r in reports}
    assert all(r.output_error is not None for r in reports)
    assert by_name["head"].output_error < by_name["head"].relative_error * 1.5
    assert aware(data[0]).shape == (8, 16)
    assert model.training  # record_grams restores the model's mode


def test_grams_of_a_recurrent_layer_are_its_inputs_and_previous_states():
    lstm = nn.LSTM(5, 6, batch_first=True).double()
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    grams = tn.record_grams(nn.Sequential(lstm), ["0"], [x])["0"]
    rows = x.reshape(-1, 5)
    assert torch.allclose(grams["weight_ih_l0"], rows.T @ rows / 12)
    out, _ = lstm(x)
    prev = torch.cat([torch.zeros(3, 1, 6, dtype=torch.float64), out[:, :-1]], dim=1).reshape(-1, 6)
    assert torch.allclose(grams["weight_hh_l0"], prev.T @ prev / 12)


def test_gpt2_conv1d_compresses_runs_and_saves(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16,
                                  bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = [torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(k)) for k in range(12)]
    with pytest.warns(UserWarning, match=r"leaves 1 layer\(s\) dense: 'lm_head' \(its weight is tied to "
                                         r"transformer.wte.weight"):
        small, reports = tn.compress(model, compression=2, calibration=ids)
    assert {r.kind for r in reports} == {"Conv1D"}
    assert small.lm_head.weight is small.transformer.wte.weight  # tied weights stay tied
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    assert isinstance(small.transformer.h[0].attn.c_attn, tn.MPOLinear)
    logits = small(ids[0]).logits
    assert logits.shape == (2, 12, 64) and torch.isfinite(logits).all()
    tn.save(small, tmp_path / "gpt2.safetensors")
    fresh = transformers.GPT2LMHeadModel(cfg).eval()
    back = tn.load(tmp_path / "gpt2.safetensors", model=fresh)
    assert torch.equal(back(ids[0]).logits, logits)


def test_save_load_round_trip_rebuilds_weight_dependent_shapes(tmp_path):
    model = Recurrent()
    small, _ = tn.compress(model, compression=4)
    tn.save(small, tmp_path / "m.safetensors")
    with pytest.raises(RuntimeError):
        Recurrent().load_state_dict(small.state_dict())  # the problem save/load solves
    back = tn.load(tmp_path / "m.safetensors", model=Recurrent())
    x = batches(1)[0]
    assert torch.equal(back(x), small(x))
    layer = tn.MPOGRU.from_gru(nn.GRU(4, 6, bias=False), tnlib.Truncation(max_bond=2), num_cores=2)
    tn.save(layer, tmp_path / "g.safetensors")
    alone = tn.load(tmp_path / "g.safetensors")
    seq = torch.randn(5, 2, 4)
    assert isinstance(alone, tn.MPOGRU) and torch.equal(alone(seq)[0], layer(seq)[0])


def test_save_load_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"is not a readable safetensors file"):
        tn.load(bad)
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match=r"holds no tnlib structure header"):
        tn.load(tmp_path / "plain.safetensors")
    small, _ = tn.compress(Recurrent(), compression=4)
    tn.save(small, tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match=r"holds a model, not one tnlib layer: pass model="):
        tn.load(tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match=r"the file has a layer 'lstm' that model does not"):
        tn.load(tmp_path / "m.safetensors", model=nn.Sequential(nn.Linear(2, 2)))
    assert not list(tmp_path.glob("*.tmp"))


def test_distill_lowers_the_gap_to_the_teacher():
    torch.manual_seed(0)
    teacher = Recurrent()
    student, _ = tn.compress(teacher, compression=8)
    data = batches(4)
    losses = tn.distill(student, teacher, data, steps=30, lr=3e-3)
    assert len(losses) == 30 and losses[-1] < losses[0]
    with pytest.raises(ValueError, match=r"steps=0 is invalid"):
        tn.distill(student, teacher, data, steps=0)
    with pytest.raises(ValueError, match=r"batches holds no inputs"):
        tn.distill(student, teacher, [], steps=3)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 4)

    def forward(self, x):
        return self.used(x)


def test_compress_calibration_errors():
    model = Recurrent()
    with pytest.raises(ValueError, match=r"calibration batch 0 does not fit the model: RuntimeError"):
        tn.compress(model, compression=4, calibration=[torch.randn(8, 7, 5)])
    with pytest.raises(ValueError, match=r"calibration needs compression= or a truncation"):
        tn.compress(model, tnlib.Truncation(), calibration=batches(1))
    with pytest.raises(ValueError, match=r"compress needs a target: compression=.*tnlib.Truncation\(\)"):
        tn.compress(model)
    with pytest.raises(ValueError, match=r"never reached layer\(s\) \['unused'\]"):
        tn.compress(Branchy(), compression=2, calibration=[torch.randn(3, 4)])
    with pytest.raises(ValueError, match=r"calibration holds no batches"):
        tn.compress(Branchy(), compression=2, layers=["used"], calibration=[])
    with pytest.raises(TypeError, match=r"layers must be a sequence of module names, got 'used'"):
        tn.compress(Branchy(), compression=2, layers="used")
    with pytest.raises(ValueError, match=r"layer 'used' \(4 x 4 weight\) cannot be held in 1 parameters"):
        tn.compress(Branchy(), compression=16, layers=["used"])
    with pytest.raises(TypeError, match=r"layer '' is a Branchy; only (Affine, )?nn.Conv1d \(groups=1, zero "
                                        r"padding\), transformers' Conv1D, .*nn.Linear, nn.LSTM, nn.LSTMCell and "
                                        r"nn.MultiheadAttention .* can"):
        tn.compress(Branchy(), layers=[""])


def test_compress_reads_the_registry_of_kinds_and_reports_come_from_the_mpo_reports():
    from tnlib.nn._layers._kinds import sources

    kinds = {s.kind for s, _ in sources()}
    assert {"Conv1D", "LSTMCell", "GRUCell", "LSTM", "GRU", "Linear", "Conv2d", "Conv1d", "Embedding"} <= kinds
    torch.manual_seed(0)
    model = nn.ModuleDict({"lin": nn.Linear(32, 48), "rnn": nn.GRU(8, 16), "cell": nn.LSTMCell(8, 16)})
    small, reports = tn.compress(model, compression=3)
    for r in reports:
        module = model[r.name]
        replaced = small[r.name]
        if r.kind == "Linear":
            pairs = [(module.weight, replaced.dense_weight())]
        elif r.kind == "GRU":
            pairs = list(zip((module.weight_ih_l0, module.weight_hh_l0), replaced.dense_weights(0, 0)))
        else:
            pairs = list(zip((module.weight_ih, module.weight_hh), replaced.dense_weights()))
        with torch.no_grad():
            num = sum(float(torch.linalg.vector_norm(w.double() - d.double())) ** 2 for w, d in pairs)
            den = sum(float(torch.linalg.vector_norm(w.double())) ** 2 for w, _ in pairs)
        assert r.relative_error == pytest.approx((num / den) ** 0.5, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("bad", [True, "8", float("nan"), float("inf"), 0.5, 0])
def test_compress_ratio_is_checked_once_with_one_convention(bad):
    error = TypeError if isinstance(bad, (bool, str)) else ValueError
    with pytest.raises(error, match="compression"):
        tn.compress(nn.Sequential(nn.Linear(8, 8)), compression=bad)


def test_compress_names_the_layer_when_its_budget_is_too_small_with_fixed_dims_too():
    with pytest.raises(ValueError, match=r"layer '0' .* cannot be held"):
        tn.compress(nn.Sequential(nn.Linear(64, 64)), compression=2000, num_cores=3)


@pytest.mark.parametrize(("lr", "error"), [(float("inf"), ValueError), (float("nan"), ValueError), (0.0, ValueError),
                                           ("1e-3", TypeError)])
def test_distill_refuses_a_learning_rate_that_would_corrupt_the_student(lr, error):
    teacher = nn.Sequential(nn.Linear(8, 8))
    student, _ = tn.compress(teacher, compression=2)
    before = [p.detach().clone() for p in student.parameters()]
    with pytest.raises(error, match="lr"):
        tn.distill(student, teacher, [torch.randn(4, 8)], steps=2, lr=lr)
    assert all(torch.equal(a, b) for a, b in zip(before, student.parameters()))


class Other(nn.Module):
    """Recurrent's module names with other kinds and sizes behind them."""

    def __init__(self, gru_hidden=16, kind="lstm"):
        super().__init__()
        self.lstm = nn.GRU(12, 16, num_layers=2, batch_first=True, bidirectional=True) if kind == "gru" else \
            nn.LSTM(12, 16, num_layers=2, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(32, gru_hidden, batch_first=True)
        self.cell = nn.LSTMCell(16, 16)
        self.gcell = nn.GRUCell(16, 16)
        self.head = nn.Linear(16, 16)


@pytest.mark.parametrize(("target", "message"), [
    (lambda: Other(kind="gru"), r"has a MPOLSTM at 'lstm', but model has a GRU there"),
    (lambda: Other(gru_hidden=8), r"layer 'gru' of other sizes than model's \(hidden_size=16 vs 8\)"),
])
def test_load_into_another_architecture_is_refused_and_leaves_the_model_untouched(tmp_path, target, message):
    small, _ = tn.compress(Recurrent(), compression=4)
    tn.save(small, tmp_path / "m.safetensors")
    model = target()
    before = {n: type(m) for n, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        tn.load(tmp_path / "m.safetensors", model=model)
    assert {n: type(m) for n, m in model.named_modules()} == before
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(("tamper", "message"), [
    (lambda t: t.update({"extra.weight": torch.zeros(2)}), r"does not fit the model \(unexpected: extra.weight\)"),
    (lambda t: t.update({"gru.bias_ih_l0": torch.zeros(5)}), r"layer 'gru' does not run with the saved settings"),
])
def test_a_failing_load_puts_every_module_back(tmp_path, tamper, message):
    """A file whose tensors do not fit fails before anything is copied, or puts the modules back."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    small, _ = tn.compress(Recurrent(), compression=4)
    tn.save(small, tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    tamper(tensors)
    save_file(tensors, str(tmp_path / "cut.safetensors"), metadata=meta)
    model = Recurrent()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        tn.load(tmp_path / "cut.safetensors", model=model)
    assert all(type(m).__module__.startswith("torch.") or m is model for m in model.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_a_tampered_header_fails_at_load_not_at_the_first_forward(tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    layer = tn.MPOLSTM(8, 16, bond_dim=2, num_cores=2)
    tn.save(layer, tmp_path / "l.safetensors")
    with safe_open(str(tmp_path / "l.safetensors"), framework="pt") as fh:
        header = json.loads(fh.metadata()["tnlib.nn"])
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    header["layers"][""]["attrs"]["hidden_size"] = 12
    save_file(tensors, str(tmp_path / "t.safetensors"), metadata={"tnlib.nn": json.dumps(header)})
    with pytest.raises(ValueError, match=r"does not run with the saved settings"):
        tn.load(tmp_path / "t.safetensors")


@pytest.mark.parametrize("make, edit, message", [
    (lambda: nn.Sequential(nn.Conv2d(4, 8, 3, padding=1)), ("padding", [0, 0]),
     r"other sizes than model's \(padding=\(0, 0\) vs \(1, 1\)\)"),
    (lambda: nn.Sequential(nn.Embedding(100, 32, padding_idx=3)), ("padding_idx", 5),
     r"other sizes than model's \(padding_idx=5 vs 3\)"),
    (lambda: nn.Sequential(nn.Linear(64, 48)), ("out_dims", "48"), r"out_dims='48'; expected a tuple of positive ints"),
    (lambda: nn.Sequential(nn.Linear(64, 48)), ("out_dims", [True, 48]), r"expected a tuple of positive ints"),
    (lambda: nn.Sequential(nn.Linear(64, 48)), ("in_dims", [8, 8]), r"in_dims=\(8, 8\) but the saved cores"),
    (lambda: nn.Sequential(nn.LSTMCell(16, 32)), ("gate_dims", "x"), r"gate_dims='x'; expected a tuple"),
])
def test_a_header_edited_to_other_settings_is_refused(tmp_path, make, edit, message):
    """Settings the probe forward does not read (a padding, a padding_idx, the site dims) are checked too."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model = make()
    first = model[0]
    small = nn.Sequential(tn.MPOEmbedding.from_embedding(first, tnlib.Truncation(max_bond=4))
                          if isinstance(first, nn.Embedding) else tn.compress(model, compression=2)[0][0])
    path = tmp_path / "m.safetensors"
    tn.save(small, path)
    assert type(tn.load(path, model=make())[0]) is type(small[0])  # untampered: loads
    with safe_open(str(path), framework="pt") as fh:
        header = json.loads(fh.metadata()["tnlib.nn"])
    field, value = edit
    header["layers"]["0"]["attrs"][field] = value
    save_file(load_file(str(path)), str(path), metadata={"tnlib.nn": json.dumps(header)})
    fresh = make()
    with pytest.raises(ValueError, match=message):
        tn.load(path, model=fresh)
    assert type(fresh[0]) is type(first)  # the model is left as it was


def test_load_while_another_process_saves_always_reads_one_whole_file(tmp_path):
    """load reads the file's bytes once: a concurrent save (an atomic rename) gives it the old file or the
    new one, never a mix (two opens used to see two versions: 'smaller than the required mapping size')."""
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "layer.safetensors"
    tn.save(tn.MPOLinear(64, 64, bond_dim=4), path)
    writer = textwrap.dedent(f"""
        import torch, tnlib.nn as tn
        for k in range(40):
            tn.save(tn.MPOLinear(64, 64, bond_dim=2 + k % 7), {str(path)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer])
    loads = 0
    try:
        while proc.poll() is None and loads < 2000:
            layer = tn.load(path)
            assert layer(torch.zeros(1, 64)).shape == (1, 64)
            loads += 1
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0 and loads > 0


def test_distill_reads_an_endless_iterator_only_as_far_as_the_steps():
    teacher = nn.Sequential(nn.Linear(8, 8))
    student, _ = tn.compress(teacher, compression=2)
    drawn = []

    def endless():
        while True:
            drawn.append(1)
            yield torch.randn(4, 8)

    assert len(tn.distill(student, teacher, endless(), steps=5)) == 5
    assert len(drawn) == 5


def test_distill_refuses_outputs_of_other_shapes_instead_of_broadcasting():
    teacher = nn.Sequential(nn.Linear(8, 1))
    student = nn.Sequential(nn.Linear(8, 8))
    with pytest.raises(ValueError, match=r"outputs differ in shape on batch 0: \(4, 8\) vs \(4, 1\)"):
        tn.distill(student, teacher, [torch.randn(4, 8)], steps=2)


def test_layers_and_names_are_checked():
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"layers names '0' more than once"):
        tn.compress(net, compression=2, layers=["0", "0"])
    batches_ = [torch.randn(4, 8)]
    with pytest.raises(TypeError, match=r"names must be a sequence of module names, got '10'"):
        tn.record_grams(net, "10", batches_)
    with pytest.raises(TypeError, match=r"layer '1' is a ReLU, which has no weight matrix"):
        tn.record_grams(net, ["1"], batches_)
    with pytest.raises(ValueError, match=r"names lists '0' twice"):
        tn.record_grams(net, ["0", "0"], batches_)
    with pytest.raises(ValueError, match=r"names holds 'nope', which is not a module"):
        tn.record_grams(net, ["nope"], batches_)


def _two_layer_model():
    """Two 64 x 64 layers: a flat spectrum, then (on nearly isotropic inputs) a fast-decaying one."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64, bias=False), nn.Tanh(), nn.Linear(64, 64, bias=False)).double()
    with torch.no_grad():
        q1, _ = torch.linalg.qr(torch.randn(64, 64, dtype=torch.float64))
        q2, _ = torch.linalg.qr(torch.randn(64, 64, dtype=torch.float64))
        model[0].weight.copy_(torch.randn(64, 64, dtype=torch.float64) / 8)
        model[2].weight.copy_(q1 * 0.7 ** torch.arange(64.0, dtype=torch.float64) @ q2)
    return model


@pytest.mark.parametrize("calibrated", [False, True])
def test_global_allocation_spends_the_budget_where_it_removes_most_error(calibrated):
    model = _two_layer_model()
    data = [torch.randn(16, 64, dtype=torch.float64) for _ in range(32)] if calibrated else None
    uniform, u_reports = tn.compress(model, compression=4, calibration=data)
    shared, g_reports = tn.compress(model, compression=4, calibration=data, allocation="global")
    total = 2 * 64 * 64 // 4
    assert sum(r.params_after for r in g_reports) <= total
    assert sum(r.budget for r in g_reports) <= total
    assert g_reports[1].share < 0.5 < g_reports[0].share  # the fast-decaying layer needs less
    assert sum(r.share for r in g_reports) == pytest.approx(1.0)
    assert [r.share for r in u_reports] == [0.5, 0.5]

    x = torch.randn(256, 64, dtype=torch.float64)  # inputs no fit saw
    if calibrated:  # the allocation minimises the model's output change
        with torch.no_grad():
            ref = model(x)
            assert float(((shared(x) - ref) ** 2).sum()) < float(((uniform(x) - ref) ** 2).sum())
    else:  # the summed relative squared error
        assert sum(r.relative_error**2 for r in g_reports) < sum(r.relative_error**2 for r in u_reports)
    assert shared(x[:5]).shape == (5, 64)


class _Branches(nn.Module):
    """Two parallel layers of one spectrum; the model listens to the second 20x less."""

    def __init__(self):
        super().__init__()
        self.loud, self.quiet = nn.Linear(48, 48, bias=False), nn.Linear(48, 48, bias=False)

    def forward(self, x):
        return self.loud(x) + 0.05 * self.quiet(x)


def test_global_allocation_with_calibration_follows_what_the_outputs_feel():
    torch.manual_seed(0)
    model = _Branches().double()
    q = torch.linalg.qr(torch.randn(48, 48, dtype=torch.float64))[0]
    with torch.no_grad():
        model.loud.weight.copy_(q * 0.9 ** torch.arange(48.0, dtype=torch.float64))
        model.quiet.weight.copy_(q.T * 0.9 ** torch.arange(48.0, dtype=torch.float64))
    data = [torch.randn(32, 48, dtype=torch.float64) for _ in range(16)]
    _, blind = tn.compress(model, compression=4, allocation="global")  # no data: the two look alike
    small, reports = tn.compress(model, compression=4, calibration=data, allocation="global")
    assert blind[0].share == pytest.approx(0.5, abs=0.05)
    assert reports[0].share > 0.8  # the budget went where the outputs feel it
    uniform, _ = tn.compress(model, compression=4, calibration=data)
    x = torch.randn(512, 48, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        assert float(((small(x) - ref) ** 2).sum()) < 0.5 * float(((uniform(x) - ref) ** 2).sum())


def test_a_global_allocation_worse_for_the_model_than_uniform_is_not_kept(monkeypatch):
    """The global split minimises a proxy (weighted layer errors); it is kept only when the whole model's outputs
    move less than under the uniform split, and every report says which was kept and by how much."""
    import tnlib.nn._convert._compress as compress_module

    model = _Branches().double()
    torch.manual_seed(0)
    data = [torch.randn(32, 48, dtype=torch.float64) for _ in range(16)]
    small, reports = tn.compress(model, compression=4, calibration=data, allocation="global")
    assert all(r.note.startswith("allocation global: the model's outputs moved") for r in reports)
    assert "on 2 held-out calibration batch(es)" in reports[0].note  # batches 4 and 8 of the first 8: no fit saw them
    _, few = tn.compress(model, compression=4, calibration=data[:3], allocation="global")
    assert "on 3 fitted (too few to hold one out) calibration batch(es)" in few[0].note

    def starving(model, targets, truncation, compression, grams, batches):  # the loud branch starved
        return {"loud": {"weight": 2 * 48}, "quiet": {"weight": 2 * 48 * 48 // 4 - 2 * 48}}

    monkeypatch.setattr(compress_module, "global_budgets", starving)
    kept, reports = tn.compress(model, compression=4, calibration=data, allocation="global")
    assert all("allocation uniform: the model's outputs moved" in r.note for r in reports)
    assert [r.share for r in reports] == [0.5, 0.5]
    moved = [float(n) for n in reports[0].note.replace(",", " ").split() if n.replace(".", "").isdigit()]
    assert moved[0] < moved[-1]  # uniform's change, then global's
    # the forms of the split kept are fitted again on every batch, the two held out for the check included: each
    # layer is its layout and rank fitted in the Gram of all sixteen batches (at one shrinkage of the grid)
    mix = torch.randn(48, 48, dtype=torch.float64) * torch.logspace(0, -3, 48, dtype=torch.float64)
    data = [torch.randn(32, 48, dtype=torch.float64) @ mix for _ in range(16)]  # inputs whose metric matters
    kept, reports = tn.compress(model, compression=4, calibration=data, allocation="global")
    assert all("allocation uniform: the model's outputs moved" in r.note for r in reports)
    grams = tn.record_grams(model, ["loud", "quiet"], data)
    for name in ("loud", "quiet"):
        layer, w = kept.get_submodule(name), model.get_submodule(name).weight.detach()
        mpo = layer.mpo
        dims = tuple(int(c.shape[1]) for c in mpo.cores), tuple(int(c.shape[2]) for c in mpo.cores)
        fits = [tnlib.MPO.from_matrix(w, *dims, truncation=tnlib.Truncation(max_bond=mpo.bond_dims[0]),
                                      metric=tnlib.Metric(grams[name]["weight"], shrinkage=s)).to_matrix()
                for s in tnlib.metric.SHRINKAGE_GRID]
        with torch.no_grad():
            assert any(torch.allclose(layer.dense_weight(), f, rtol=1e-9, atol=1e-12) for f in fits), name
        assert reports[[r.name for r in reports].index(name)].held_out_error is not None  # the choice's, kept


def test_output_change_per_error_of_a_linear_layer_is_its_row_count():
    """For y = x W^T on n rows whose Gram is C, the output change per unit of error in C's metric is n:
    the estimator is exact in expectation, and scaling the output by a scales it by a^2."""
    from tnlib import metric
    from tnlib.nn._convert._sensitivity import output_change_per_error

    torch.manual_seed(0)
    for scale in (1.0, 0.1):
        lin = nn.Linear(24, 40).double()
        model = nn.Sequential(lin, _Scale(scale))
        x = torch.randn(64, 24, dtype=torch.float64) @ torch.diag(torch.logspace(0, -1, 24, dtype=torch.float64))
        factor = metric.gram_factor(x.T @ x / 64, 0.0).L_inv
        got = output_change_per_error(model, {"w": lin.weight}, {"w": lambda g: g}, {"w": factor}, [x] * 8)
        assert got is not None and got["w"] == pytest.approx(64 * scale**2, rel=0.15)
        assert lin.weight.requires_grad and model.training  # flags and mode restored


class _Scale(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a

    def forward(self, x):
        return self.a * x


def test_allocation_errors_and_a_failing_layer_leaves_the_model_whole():
    model = _two_layer_model()
    with pytest.raises(ValueError, match=r"allocation must be 'uniform' or 'global', got 'bogus'"):
        tn.compress(model, compression=4, allocation="bogus")
    with pytest.raises(ValueError, match=r"allocation='global' shares the budget of a compression ratio"):
        tn.compress(model, truncation=tnlib.Truncation(max_bond=4), allocation="global")
    net = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 2))
    before = [type(m) for m in net]
    with pytest.raises(ValueError, match=r"layer '1' \(2 x 64 weight\) cannot be held in 6 parameters"):
        tn.compress(net, compression=20, inplace=True)
    assert [type(m) for m in net] == before  # the first layer converted fine, but nothing was replaced


def test_latency_objective_prefers_fewer_multiply_adds_within_the_tolerance():
    torch.manual_seed(0)
    net = nn.Sequential(nn.LSTM(64, 64))
    by_error, (err_report,) = tn.compress(net, compression=4)
    fast, (fast_report,) = tn.compress(net, compression=4, objective="latency", tolerance=0.05)
    assert fast_report.macs <= err_report.macs
    assert fast_report.dense_macs == err_report.dense_macs == 4 * 64 * 64 * 2
    assert fast_report.flop_ratio == fast_report.macs / fast_report.dense_macs
    # within the tolerance of the error-objective's choice (each of its matrices was within 5 % of its best)
    assert fast_report.relative_error <= 1.05 * err_report.relative_error + 1e-12
    x = torch.randn(5, 2, 64)
    assert fast(x)[0].shape == (5, 2, 64)
    with pytest.raises(ValueError, match="objective='speed' is invalid"):
        tn.compress(net, compression=4, objective="speed")
    with pytest.raises(ValueError, match="tolerance=1.5 is invalid"):
        tn.compress(net, compression=4, objective="latency", tolerance=1.5)


def test_latency_objective_with_calibration_stays_safe_on_held_out_rows():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(32, 32))
    batches = [torch.randn(64, 32) for _ in range(8)]
    _, (report,) = tn.compress(net, compression=4, calibration=batches, objective="latency")
    assert report.held_out_error is not None and report.macs <= report.dense_macs


def test_complex_layers_keep_their_imaginary_part():
    torch.manual_seed(0)
    lin = nn.Linear(8, 8, dtype=torch.complex64)
    x = torch.randn(3, 8, dtype=torch.complex64)
    with pytest.warns(UserWarning, match="an exact conversion is larger"):
        exact, _ = tn.compress(nn.Sequential(lin), tnlib.Truncation())
    assert torch.allclose(exact(x), lin(x), atol=1e-5)
    conv = nn.Conv2d(2, 4, 3, dtype=torch.complex64)
    xx = torch.randn(1, 2, 6, 6, dtype=torch.complex64)
    assert torch.allclose(tn.MPOConv2d.from_conv2d(conv, tnlib.Truncation())(xx), conv(xx), atol=1e-5)
    with pytest.raises(ValueError, match="layer '0' has a complex weight"):
        tn.compress(nn.Sequential(lin), compression=2, calibration=[x])


def test_a_convolution_with_few_channel_directions_becomes_a_tucker_network():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 32, 3, padding=1))
    with torch.no_grad():  # a kernel of channel ranks (8, 8) plus noise: what a Tucker-2 network holds
        w = torch.einsum("or,rskl,is->oikl", torch.randn(64, 8), torch.randn(8, 8, 3, 3), torch.randn(64, 8)) / 30
        net[0].weight.copy_(w + 0.01 * torch.randn_like(w))
    for calibration in (None, [torch.randn(4, 64, 12, 12) for _ in range(8)]):
        small, reports = tn.compress(net, compression=8, calibration=calibration)
        assert isinstance(small[0], tn.TuckerConv2d) and reports[0].layouts[0].startswith("tucker-2")
        assert reports[0].params_after <= 64 * 64 * 9 // 8 and reports[0].relative_error < 0.05
        assert reports[0].macs < reports[0].dense_macs / 8
        x = torch.randn(2, 64, 10, 10)
        with torch.no_grad():
            err = (small[0](x) - net[0](x)).norm() / net[0](x).norm()
        assert err < 0.06
        tucker = reports[0].held_out_error if calibration else reports[0].relative_error
        mpo_only, (mpo_report, _) = tn.compress(net, compression=8, num_cores=2, calibration=calibration)
        assert tucker < (mpo_report.held_out_error if calibration else mpo_report.relative_error)


def test_a_convolution_of_few_cp_terms_becomes_a_cp_network():
    """A kernel that is a sum of 24 terms (plus noise): at 8x the CP network holds it (the budget buys rank 28),
    while Tucker-2 would need ranks (24, 24), three times the budget; with calibration it is chosen on held-out
    patches."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(48, 64, 3, padding=1))
    with torch.no_grad():
        w = torch.einsum("or,ir,tr->oit", torch.randn(64, 24), torch.randn(48, 24), torch.randn(9, 24)) / 30
        net[0].weight.copy_(w.reshape(64, 48, 3, 3) + 1e-3 * torch.randn(64, 48, 3, 3))
    for calibration in (None, [torch.randn(4, 48, 10, 10) for _ in range(8)]):
        small, reports = tn.compress(net, compression=8, calibration=calibration)
        assert isinstance(small[0], tn.CPConv2d) and reports[0].layouts[0].startswith("cp rank")
        assert reports[0].params_after <= 64 * 48 * 9 // 8 and reports[0].relative_error < 0.02
        assert reports[0].macs == small[0].macs_per_pixel < reports[0].dense_macs / 8
        x = torch.randn(2, 48, 10, 10)
        with torch.no_grad():
            err = (small[0](x) - net[0](x)).norm() / net[0](x).norm()
        assert err < 0.02
