"""minigrad.nn: registration and names, state dicts, modes, freezing, and the
layers' shapes and initialisation as PyTorch defines them."""

import math

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(8, 3, bias=False)
        self.scale = nn.Parameter(np.ones(3, np.float32))
        self.register_buffer("mask", np.array([1.0, 0.0, 1.0], np.float32))
        self.not_a_param = np.zeros(2)

    def forward(self, x):
        return self.head(self.body(x)) * self.scale * mg.tensor(self.mask)


NAMES = ["scale", "body.0.weight", "body.0.bias", "head.weight"]


def test_parameters_are_registered_with_dotted_names():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == NAMES
    assert [p.shape for p in net.parameters()] == [(3,), (8, 4), (8,), (3, 8)]
    assert net.num_parameters() == 3 + 32 + 8 + 24
    assert [type(m).__name__ for m in net.children()] == ["Sequential", "Linear"]
    assert [n for n, _ in net.named_modules()] == ["", "body", "body.0", "body.1", "body.2",
                                                   "head"]


def test_shared_weight_and_shared_module_are_listed_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias"]


def test_state_dict_round_trip_copies_values():
    a, b = Net(), Net()
    sd = a.state_dict()
    assert list(sd) == ["scale", "mask"] + NAMES[1:]  # own params, own buffers, then children
    sd_b = b.state_dict()
    assert any(not np.array_equal(sd[k], sd_b[k]) for k in sd)  # two different random inits
    missing, unexpected = b.load_state_dict(sd)
    assert missing == [] and unexpected == []
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    sd["head.weight"][...] = 42.0  # the state dict is a copy, not a view of the model
    assert not np.any(a.head.weight.data == 42.0)
    x = mg.randn(2, 4)
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_load_state_dict_errors_and_non_strict():
    net = Net()
    sd = net.state_dict()
    del sd["head.weight"]
    sd["extra"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['head.weight'\].*unexpected keys \['extra'\]"):
        net.load_state_dict(sd)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["head.weight"] and result.unexpected_keys == ["extra"]

    bad = Net().state_dict()
    before = net.state_dict()
    bad["head.weight"] = np.zeros((8, 3), np.float32)
    with pytest.raises(ValueError, match=r"head.weight has shape \(8, 3\).*but \(3, 8\)"):
        net.load_state_dict(bad)
    for k, v in net.state_dict().items():  # nothing was copied before the shape error
        np.testing.assert_array_equal(v, before[k])


def test_reassigned_buffer_stays_a_buffer():
    net = Net()
    net.mask = np.array([0.0, 1.0, 0.0], np.float32)
    np.testing.assert_array_equal(net.state_dict()["mask"], [0.0, 1.0, 0.0])


def test_train_and_eval_switch_dropout_everywhere():
    net = Net()
    x = mg.ones(50, 4)
    h_train = net.body(x).data
    assert (h_train == 0).mean() > 0.3           # dropout active: about half zeroed (plus ReLU)
    net.eval()
    assert not any(m.training for m in net.modules())
    np.testing.assert_array_equal(net.body(x).data, net.body(x).data)  # deterministic
    np.testing.assert_array_equal(net.body(x).data, net.body[:2](x).data)
    net.train()
    assert all(m.training for m in net.modules())


def test_requires_grad_false_freezes_a_backbone():
    net = Net()
    net.body.requires_grad_(False)
    frozen = {k: v.copy() for k, v in net.state_dict().items() if k.startswith("body")}
    opt = optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    loss = F.cross_entropy(net(mg.randn(5, 4)), np.array([0, 1, 2, 0, 1]))
    loss.backward()
    assert net.body[0].weight.grad is None and net.head.weight.grad is not None
    opt.step()
    for k, v in frozen.items():
        np.testing.assert_array_equal(net.state_dict()[k], v)
    assert net.num_parameters(trainable_only=True) == 3 + 24


def test_linear_shape_and_init_bounds():
    lin = nn.Linear(50, 20)
    assert lin.weight.shape == (20, 50) and lin.bias.shape == (20,)
    bound = 1 / math.sqrt(50)  # PyTorch's default: U(-1/sqrt(in), 1/sqrt(in)) for both
    for p in (lin.weight, lin.bias):
        assert p.dtype == np.float32 and p.requires_grad
        assert np.abs(p.data).max() <= bound
    # a uniform draw of 1000 values reaches close to its bounds
    assert np.abs(lin.weight.data).max() > 0.95 * bound
    x = mg.randn(7, 50)
    np.testing.assert_allclose(lin(x).data, x.data @ lin.weight.data.T + lin.bias.data,
                               rtol=1e-5)
    with pytest.raises(ValueError, match="in_features must be a positive integer"):
        nn.Linear(0, 3)


def test_mlp_structure():
    mlp = nn.MLP([784, 512, 512, 10], activation="gelu", dropout=0.1)
    kinds = [type(m).__name__ for m in mlp]
    assert kinds == ["Linear", "GELU", "Dropout", "Linear", "GELU", "Dropout", "Linear"]
    assert mlp.num_parameters() == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
    assert mlp(mg.randn(3, 784)).shape == (3, 10)
    with pytest.raises(ValueError, match="activation must be one of"):
        nn.MLP([2, 2], activation="swish")


def test_layers_match_their_functions():
    x = mg.randn(2, 3, 6)
    ln, rms = nn.LayerNorm(6), nn.RMSNorm(6)
    np.testing.assert_allclose(ln(x).data, F.layer_norm(x, 6).data, rtol=1e-6)
    np.testing.assert_allclose(rms(x).data, F.rms_norm(x, 6).data, rtol=1e-6)
    emb = nn.Embedding(10, 4)
    np.testing.assert_array_equal(emb(np.array([3, 3])).data, emb.weight.data[[3, 3]])
    for act, fn in ((nn.ReLU(), F.relu), (nn.GELU(), F.gelu), (nn.Tanh(), F.tanh),
                    (nn.Sigmoid(), F.sigmoid)):
        np.testing.assert_array_equal(act(x).data, fn(x).data)


def test_module_must_call_super_init():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.ones(2))

    with pytest.raises(AttributeError, match="must call super"):
        Bad()


def test_replacing_a_child_keeps_its_place_in_the_order():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    setattr(seq, "0", nn.Linear(2, 3))
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    lin = nn.Linear(2, 2)
    lin.weight = nn.Parameter(np.zeros((2, 2), np.float32))
    assert [n for n, _ in lin.named_parameters()] == ["weight", "bias"]
    seq.__setattr__("1", None)  # a child replaced by a non-module leaves the registry
    assert "1" not in seq._modules
