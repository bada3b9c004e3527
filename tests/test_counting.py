"""Parameter and FLOP counts: closed forms, agreement with the model itself,
the linear/nonlinear split, and the exam questions' answer functions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigrad import counting, nn, optim
from minigrad.nn import Parameter


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(1, 12), min_size=2, max_size=5), n=st.integers(1, 7),
       bias=st.booleans())
def test_mlp_counts_match_closed_forms(sizes, n, bias):
    model = nn.MLP(sizes, bias=bias)
    counts = counting.count(model, (n, sizes[0]))
    assert sum(c.params for c in counts) == model.num_parameters() \
        == counting.mlp_parameters(sizes, bias=bias)
    lin = [c for c in counts if c.kind == "linear"]
    assert [c.flops for c in lin] == [counting.linear_flops(n, a, b, bias=bias)
                                      for a, b in zip(sizes[:-1], sizes[1:])]
    relu = [c for c in counts if c.type == "ReLU"]
    assert [c.flops for c in relu] == [n * h for h in sizes[1:-1]]   # one max per element


def test_linear_flops_is_two_per_multiply_add_plus_bias():
    # the product x W^T on N rows has N*out dot products of length in: in mults + in adds,
    # counted as 2*in (the usual convention), plus one add per output for the bias
    assert counting.linear_flops(2048, 4096, 4096, bias=False) == 2 * 2048 * 4096 * 4096
    assert counting.linear_flops(3, 5, 7) - counting.linear_flops(3, 5, 7, bias=False) == 3 * 7


def test_small_block_split_and_shapes():
    block = nn.Sequential(nn.Linear(64, 256), nn.LayerNorm(256), nn.GELU(), nn.Linear(256, 64))
    counts = counting.count(block, (32, 64))
    assert [c.type for c in counts] == ["Linear", "LayerNorm", "GELU", "Linear"]
    assert [c.output_shape for c in counts] == [(32, 256)] * 3 + [(32, 64)]
    t = counting.totals(counts)
    assert t["nonlinear"]["params"] == 2 * 256                    # LayerNorm weight and bias
    assert t["linear"]["params"] == 64 * 256 + 256 + 256 * 64 + 64
    # LayerNorm 7 per element with affine, GELU 5 per element
    assert t["nonlinear"]["flops"] == (7 + 5) * 32 * 256
    assert t["linear"]["params"] > 50 * t["nonlinear"]["params"]
    assert t["linear"]["flops"] > 20 * t["nonlinear"]["flops"]
    table = counting.format_counts(counts)
    assert "LayerNorm" in table and f"{t['total']['flops']:,}" in table


def test_count_handles_nested_modules_and_leaves_the_model_as_it_was():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.act = nn.Tanh()
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return self.drop(self.act(self.fc(x))) + x

    model = nn.Sequential(Block(), nn.Linear(4, 2), nn.Sigmoid())
    counts = counting.count(model, (3, 4))
    assert [c.name for c in counts] == ["0.fc", "0.act", "0.drop", "1", "2"]
    assert [c.flops for c in counts] == [2 * 3 * 16 + 12, 12, 0, 2 * 3 * 8 + 6, 4 * 6]
    assert model.training, "count must restore train mode"
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_a_layer_called_twice_counts_flops_twice_and_params_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 5)

        def forward(self, x):
            return self.fc(self.fc(x))

    counts = counting.count(Twice(), (2, 5))
    assert [c.params for c in counts] == [30, 0]
    assert [c.flops for c in counts] == [2 * 2 * 25 + 10] * 2


def test_embedding_counts_weights_and_takes_integer_input():
    model = nn.Sequential(nn.Embedding(100, 16), nn.RMSNorm(16), nn.Linear(16, 100))
    counts = counting.count(model, (4, 8))
    assert [c.kind for c in counts] == ["linear", "nonlinear", "linear"]
    assert counts[0].params == 1600 and counts[0].flops == 0
    assert counts[1].flops == 4 * 4 * 8 * 16


def test_unknown_layer_is_an_error_naming_it_and_register_fixes_it():
    class Mystery(nn.Module):
        def forward(self, x):
            return x * 2

    model = nn.Sequential(nn.Linear(3, 3), Mystery())
    with pytest.raises(NotImplementedError, match="no FLOP rule for Mystery"):
        counting.count(model, (1, 3))
    counting.register(Mystery, "nonlinear", lambda m, x, y: int(np.prod(y)))
    try:
        assert counting.count(model, (2, 3))[1].flops == 6
    finally:
        counting._RULES.pop(Mystery)


@pytest.mark.parametrize("kv_heads", [4, 1])
def test_attention_counts_its_two_products_and_its_projections_as_linear_rows(kv_heads):
    # counted by default, so a count never depends on what registered a rule earlier
    B, T, C = 2, 5, 8
    attn = nn.MultiHeadAttention(C, num_heads=4, num_kv_heads=kv_heads, bias=False)
    rows = counting.count(attn, (B, T, C))
    own = [r for r in rows if r.type == "MultiHeadAttention"]
    assert len(own) == 1 and own[0].kind == "nonlinear"
    assert own[0].flops == 2 * B * T * T * C + 2 * B * T * T * C       # Q K^T, then A V
    linear = sum(r.flops for r in rows if r.kind == "linear")
    assert linear == 2 * B * T * sum(p.numel() for p in attn.parameters())


def test_register_with_children_counts_own_work_apart_from_child_layers():
    class Scaled(nn.Module):
        """A projection (a child Linear) followed by its own softmax over 4 outputs."""

        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(3, 4)
            self.temperature = Parameter(np.ones(1, np.float32))

        def forward(self, x):
            return (self.proj(x) / self.temperature).softmax(-1)

    counting.register(Scaled, "nonlinear", lambda m, x, y: 5 * int(np.prod(y)), children=True)
    try:
        model = nn.Sequential(Scaled(), nn.Linear(4, 2))
        counts = counting.count(model, (2, 3))
    finally:
        counting._RULES.pop(Scaled)
    assert [(c.name, c.kind) for c in counts] == [("0.proj", "linear"), ("0", "nonlinear"),
                                                   ("1", "linear")]
    assert [c.params for c in counts] == [16, 1, 10]            # the parent keeps only its own
    assert counts[1].flops == 5 * 2 * 4
    assert sum(c.params for c in counts) == model.num_parameters()


@pytest.mark.parametrize("call, exc, match", [
    (lambda: counting.count(nn.Linear(2, 2), (0, 2)), ValueError, "input_shape"),
    (lambda: counting.count("model", (1, 2)), TypeError, "must be a Module"),
    (lambda: counting.linear_flops(0, 2, 2), ValueError, "n_tokens must be a positive integer"),
    (lambda: counting.mlp_parameters([3]), ValueError, "at least"),
    (lambda: counting.optimizer_state_bytes(10, "lion"), ValueError, "optimizer must be one of"),
    (lambda: counting.register(nn.Linear, "odd", None), ValueError, "kind"),
])
def test_bad_input_names_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("name, make", [
    ("sgd", lambda p: optim.SGD(p, lr=0.1)),
    ("momentum", lambda p: optim.SGD(p, lr=0.1, momentum=0.9)),
    ("adam", lambda p: optim.Adam(p)),
    ("adamw", lambda p: optim.AdamW(p)),
])
def test_optimizer_state_bytes_matches_what_the_optimizer_holds(name, make):
    p = Parameter(np.zeros((17, 3), np.float32))
    p.grad = np.ones_like(p.data)
    opt = make([p])
    opt.step()
    assert counting.optimizer_state_bytes(p.numel(), name) == opt.state_bytes()


def test_master_weights_add_four_bytes_per_parameter():
    n = 7_000_000_000
    assert counting.optimizer_state_bytes(n, "adamw", master_weights=True) \
        == counting.optimizer_state_bytes(n, "adamw") + 4 * n \
        == 3 * counting.optimizer_state_bytes(n, "momentum")


def test_exam_answers_agree_with_the_library_another_way():
    """Each chapter 1-2 question's answer, recomputed by a different route."""
    from minigrad.exercises import ch01, ch02
    from minigrad.exercises.answers import evaluate, grade_question

    qs = {q.id: q for q in ch01.QUESTIONS + ch02.QUESTIONS}
    assert qs["ch1.q.bias_grad"].answer() == 32
    assert qs["ch1.q.linear_flops"].answer() == 2 * 2048 * 4096 ** 2
    assert grade_question(qs["ch1.q.mlp_params"], "d*h + h + h*h + h + h + 1").score == 2
    assert grade_question(qs["ch1.q.mlp_params"], "d*h + h*h + h").score == 0
    assert qs["ch1.q.fd_error"].answer() == "b"
    assert qs["ch1.q.linear_share"].answer() == "d"
    assert qs["ch2.q.adamw_7b_state"].answer() == evaluate("7e9 * (4 + 4 + 4)")
    assert qs["ch2.q.adam_bytes_per_param"].answer() == 8
    assert qs["ch2.q.frozen_trainable"].answer() == 64 * 3 + 3
    assert grade_question(qs["ch2.q.ce_uniform"], "log(C)").score == 1
    for q in qs.values():
        assert q.kind != "choice" or q.answer() in q.choices
