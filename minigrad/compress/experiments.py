"""Chapter 10's experiments as library functions: the notebook, the tour and the tests
call these and draw or check what they return.

Everything starts from one small TinyGPT that has learned 2-digit addition
(:func:`small_addition_model`, trained once per process and copied for each use, as
every method below changes weights in place). Compression is applied layer by layer,
in the model's order, each layer calibrated on the inputs it receives from the layers
already compressed before it (AutoGPTQ's ``true_sequential``). Quality is held-out
exact match: the fraction of test sums whose every answer digit is the arg-max of
the model's next-token distribution (teacher-forced, which for greedy decoding is
the same number as decoding the answer, :func:`exact_match`).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .. import functional as F
from ..nn import Module
from ..optim import AdamW
from ..tensor import Tensor, manual_seed, no_grad
from .gptq import gptq_quantize, output_error, rtn_quantize
from .obs import layer_hessian
from .pruning import apply_masks_, magnitude_mask, prunable_linears, semi_structured_mask
from .sparsegpt import sparsegpt_prune

__all__ = ["small_addition_model", "exact_match", "calibration_inputs", "record_inputs",
           "compress_linears_", "COMPRESSORS", "pruning_sweep", "gptq_vs_rtn",
           "finetune_masked_", "planted_outliers", "int8_outlier_errors", "model_weight_bytes",
           "distillation_experiment", "plus_one_batch", "peft_comparison", "int8_on_model",
           "compression_table"]

_TRAINED: dict = {}


def small_addition_model(seed: int = 0, steps: int = 600, n_embd: int = 64):
    """A TinyGPT (1 layer, 4 heads, width ``n_embd``) trained on 2-digit addition with
    ``steps`` AdamW steps (seeded). The model learns addition abruptly, late in training:
    at 500 steps seed 0 lands at 100% or 71% depending on float rounding in the kernels
    (minigrad.kernels' two backends), at 600 both reach 100%; other seeds need longer. Trained once per process per arguments; every call
    returns a fresh copy of the weights: (model, task, train_seconds)."""
    from ..models import GPTConfig, TinyGPT, train_addition

    key = (seed, steps, n_embd)
    if key not in _TRAINED:
        manual_seed(seed)
        cfg = GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=4, n_embd=n_embd)
        run = train_addition(n_digits=2, steps=steps, batch_size=64, lr=5e-3, warmup=50,
                             config=cfg, n_test=500, eval_every=10 ** 9, n_eval=1,
                             progress=False)
        _TRAINED[key] = (cfg, run.model.state_dict(), run.task, run.seconds)
    cfg, state, task, seconds = _TRAINED[key]
    manual_seed(seed)
    model = TinyGPT(cfg)
    model.load_state_dict({k: v.copy() for k, v in state.items()})
    model.eval()
    return model, task, seconds


def exact_match(model: Module, task, a=None, b=None, offset: int = 0) -> float:
    """Held-out exact match: all answer digits are the arg-max under teacher forcing.

    Greedy decoding writes digit t from the digits before it; if those are right it
    sees exactly the teacher-forced context, so "every teacher-forced arg-max right"
    and "greedy answer right" are the same event. ``offset`` skips leading positions
    of the logits (a soft prompt's virtual tokens).
    """
    a = task.test_a if a is None else a
    b = task.test_b if b is None else b
    x, y = task.batch(a, b)                                   # (N, T), (N, T)
    with no_grad():
        logits = model(x).data[:, offset:]                    # (N, T, V)
    ans = y >= 0
    right = (logits.argmax(-1) == y) | ~ans
    return float(right.all(axis=1).mean())


def calibration_inputs(task, n: int = 128, seed: int = 1) -> np.ndarray:
    """``n`` training sequences (never held-out pairs) to calibrate on: (n, T) token ids."""
    rng = np.random.default_rng(seed)
    return task.batch(*task.sample_pairs(n, rng))[0]


@contextmanager
def record_inputs(layers: dict):
    """Inside the block, every call of a layer in ``layers`` (name -> Module) appends its
    input array to ``recorded[name]``; yields ``recorded``."""
    recorded = {name: [] for name in layers}

    def wrap(name, layer):
        orig = type(layer).forward

        def forward(x, *args, **kw):
            recorded[name].append(np.asarray(getattr(x, "data", x)))
            return orig(layer, x, *args, **kw)
        return forward

    for name, layer in layers.items():
        object.__setattr__(layer, "forward", wrap(name, layer))
    try:
        yield recorded
    finally:
        for layer in layers.values():
            del layer.__dict__["forward"]


def _rtn(W, X, bits=4, group_size=-1, sym=True):
    return rtn_quantize(W, bits, group_size, sym)


def _gptq(W, X, bits=4, group_size=-1, sym=True, desc_act=True, damp_percent=0.01):
    return gptq_quantize(W, layer_hessian(X), bits=bits, group_size=group_size, sym=sym,
                         desc_act=desc_act, damp_percent=damp_percent).weight


def _magnitude(W, X, sparsity=0.5):
    return W * magnitude_mask(W, sparsity)


def _magnitude_24(W, X):
    return W * semi_structured_mask(W)


def _sparsegpt(W, X, sparsity=0.5):
    return sparsegpt_prune(W, layer_hessian(X), sparsity)[0]


def _sparsegpt_24(W, X):
    return sparsegpt_prune(W, layer_hessian(X), prunen=2, prunem=4)[0]


COMPRESSORS = {"rtn": _rtn, "gptq": _gptq, "magnitude": _magnitude, "magnitude 2:4": _magnitude_24,
               "sparsegpt": _sparsegpt, "sparsegpt 2:4": _sparsegpt_24}


def compress_linears_(model: Module, x_calib, method: str, skip=("lm_head",), **kw) -> dict:
    """Replace the weight of every Linear (but ``skip``) by ``COMPRESSORS[method](W, X, **kw)``,
    layer by layer in order, X being the layer's input on ``x_calib`` given the layers
    compressed so far. Returns name -> ||X W^T - X W_hat^T|| / ||X W^T||."""
    if method not in COMPRESSORS:
        raise ValueError(f"compress_linears_: method must be one of {list(COMPRESSORS)}, "
                         f"got {method!r}")
    errors = {}
    for name, layer in prunable_linears(model, skip).items():
        with record_inputs({name: layer}) as rec, no_grad():
            model(x_calib)
        X = np.concatenate([r.reshape(-1, layer.in_features) for r in rec[name]])
        W = layer.weight.data
        W_hat = COMPRESSORS[method](W, X, **kw).astype(W.dtype)
        errors[name] = output_error(W, W_hat, X)
        layer.weight.data = W_hat
    return errors


def pruning_sweep(sparsities=(0.5, 0.7, 0.9), methods=("magnitude", "sparsegpt"), n_calib=128,
                  **model_kw) -> dict:
    """Held-out exact match after pruning every block Linear to each sparsity, one-shot
    (no fine-tuning). Returns {"dense": acc, method: [acc per sparsity], "sparsities": ...}."""
    model, task, _ = small_addition_model(**model_kw)
    out = {"dense": exact_match(model, task), "sparsities": list(sparsities)}
    x = calibration_inputs(task, n_calib)
    for m in methods:
        out[m] = []
        for s in sparsities:
            model, task, _ = small_addition_model(**model_kw)
            compress_linears_(model, x, m, sparsity=s)
            out[m].append(exact_match(model, task))
    return out


def gptq_vs_rtn(bits=(4, 3), group_size: int = -1, n_calib=128, **model_kw) -> dict:
    """RTN and GPTQ (act-order, AutoGPTQ's defaults otherwise) at each bit width: held-out exact
    match and per-layer relative output error. Returns {"fp32": acc, bits: {method: {...}}}."""
    model, task, _ = small_addition_model(**model_kw)
    out = {"fp32": exact_match(model, task), "bits": list(bits)}
    x = calibration_inputs(task, n_calib)
    for b in bits:
        out[b] = {}
        for m in ("rtn", "gptq"):
            model, task, _ = small_addition_model(**model_kw)
            errs = compress_linears_(model, x, m, bits=b, group_size=group_size)
            out[b][m] = {"accuracy": exact_match(model, task), "layer_errors": errs}
    return out


def finetune_masked_(model: Module, task, masks: dict, steps: int = 100, lr: float = 1e-3,
                     batch_size: int = 64, seed: int = 0) -> list:
    """Prune-then-fine-tune: AdamW on the addition task, the pruned weights set back to zero
    after every step so the sparsity stays. Returns the losses."""
    rng = np.random.default_rng(seed)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = AdamW(params, lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        x, y = task.train_batch(batch_size, rng)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        apply_masks_(model, masks)
        losses.append(float(loss.data))
    model.eval()
    return losses


def planted_outliers(n: int = 256, d: int = 512, out: int = 256, n_outliers: int = 4,
                     magnitude: float = 60.0, seed: int = 0):
    """Activations X (n, d) ~ N(0, 1) with ``n_outliers`` feature columns scaled to
    |x| ~ ``magnitude`` (as large transformers grow them), and a weight W (out, d)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    cols = np.sort(rng.choice(d, n_outliers, replace=False))
    X[:, cols] *= magnitude / 3
    W = (rng.standard_normal((out, d)) / np.sqrt(d)).astype(np.float32)
    return X, W, cols


def int8_outlier_errors(X, W, threshold: float = 6.0) -> dict:
    """Relative error ||Y - Y_fp32|| / ||Y_fp32|| of vector-wise int8 without (threshold 0)
    and with the LLM.int8() decomposition, and the outlier columns it found."""
    from ..quant import quantize_absmax
    from .llm_int8 import int8_mixed_matmul, outlier_columns

    ref = X.astype(np.float64) @ W.astype(np.float64).T
    q, s = quantize_absmax(W, bits=8, dim=0)
    rel = lambda y: float(np.linalg.norm(y - ref) / np.linalg.norm(ref))  # noqa: E731
    return {"int8": rel(int8_mixed_matmul(X, q, s, threshold=0.0)),
            "LLM.int8()": rel(int8_mixed_matmul(X, q, s, threshold=threshold)),
            "outliers": outlier_columns(X, threshold)}


def model_weight_bytes(model: Module, value_bits: float = 32.0, skip=("lm_head",)) -> int:
    """Bytes of the prunable Linear weights at ``value_bits`` per weight (what compression shrinks)."""
    return int(sum(m.weight.data.size for m in prunable_linears(model, skip).values())
               * value_bits / 8)


def distillation_experiment(seed: int = 0, n_teacher: int = 1000, n_student: int = 100,
                            n_test: int = 1000, teacher_hidden: int = 128,
                            student_hidden: int = 16, steps: int = 400, T: float = 4.0,
                            alpha: float = 0.9, lr: float = 1e-2, eval_every: int = 20) -> dict:
    """A small student MLP([2, student_hidden, student_hidden, 3]) learns three noisy spirals
    from ``n_student`` labelled points, once on hard labels alone and once distilled from a
    teacher MLP([2, teacher_hidden, teacher_hidden, 3]) trained on ``n_teacher`` points;
    full-batch AdamW, the same seed, steps and initial weights for both students.

    Returns {"teacher": acc, "hard": acc, "distilled": acc, "steps": [...],
    "hard_curve": [...], "distilled_curve": [...]} (held-out accuracies).
    """
    from ..data import make_spirals
    from ..nn import MLP
    from ..peft.finetune import classifier_accuracy, train_classifier
    from .distillation import distillation_loss

    manual_seed(seed)
    xt, yt = make_spirals(n_teacher, noise=0.2)
    xs, ys = xt[:n_student], yt[:n_student]                  # the student sees a subset
    xe, ye = make_spirals(n_test, noise=0.2)
    teacher = MLP([2, teacher_hidden, teacher_hidden, 3])
    train_classifier(teacher, xt, yt, steps, lr)
    with no_grad():
        z_t = teacher(Tensor(xs)).data
    init = MLP([2, student_hidden, student_hidden, 3]).state_dict()
    out = {"teacher": classifier_accuracy(teacher, xe, ye), "steps": []}
    for name in ("hard", "distilled"):
        student = MLP([2, student_hidden, student_hidden, 3])
        student.load_state_dict(init)
        opt = AdamW(student.parameters(), lr=lr, weight_decay=0.0)
        curve = []
        for step in range(steps):
            z_s = student(Tensor(xs))
            loss = F.cross_entropy(z_s, ys) if name == "hard" else \
                distillation_loss(z_s, z_t, ys, T=T, alpha=alpha)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if (step + 1) % eval_every == 0:
                curve.append(classifier_accuracy(student, xe, ye))
                if name == "hard":
                    out["steps"].append(step + 1)
        out[f"{name}_curve"] = curve
        out[name] = classifier_accuracy(student, xe, ye)
    return out


def plus_one_batch(task, a, b):
    """Task B for prompt tuning: the same strings, but the answer is a + b + 1.
    Returns (x, y) as ``task.batch``."""
    x, y = task.batch(a, b)
    n = task.answer_len
    s = np.asarray(a) + np.asarray(b) + 1
    digits = (s[:, None] // 10 ** np.arange(n - 1, -1, -1)) % 10          # (N, n), most significant first
    if task.reverse_answer:
        digits = digits[:, ::-1]
    full = np.concatenate([x, y[:, -1:]], axis=1)                          # (N, seq_len)
    full[:, task.prompt_len:] = digits
    y = full[:, 1:].copy()
    y[:, :task.prompt_len - 1] = -100
    return full[:, :-1], y


PEFT_LR = {"prompt tuning": 1e-2, "lora": 1e-2, "full": 1e-3}


def peft_comparison(steps: int = 150, lr: dict | None = None, num_virtual_tokens: int = 4,
                    r: int = 2, seed: int = 0, batch_size: int = 64, **model_kw) -> dict:
    """Adapt the addition model to "a + b + 1" three ways, the same steps of AdamW each: a soft
    prompt (prompt tuning), LoRA on every block Linear, full fine-tuning, each at its own
    learning rate (``lr``: method -> rate, default :data:`PEFT_LR`; the few parameters of a
    soft prompt or LoRA take a larger one than the whole model can). Returns
    {method: {"trainable": int, "accuracy": held-out exact match, "losses": [...]}} plus
    "before" (the unadapted model's exact match on task B) and "total" (its parameters)."""
    from ..peft import LoraConfig, PromptTuningConfig, get_peft_model

    model, task, _ = small_addition_model(**model_kw)
    a, b = task.test_a, task.test_b

    def task_b_match(m, offset=0):
        x, y = plus_one_batch(task, a, b)
        with no_grad():
            logits = m(x).data[:, offset:]
        return float(((logits.argmax(-1) == y) | (y < 0)).all(axis=1).mean())

    out = {"before": task_b_match(model), "total": model.num_parameters()}
    makers = {
        "prompt tuning": lambda m: get_peft_model(m, PromptTuningConfig(
            num_virtual_tokens=num_virtual_tokens, prompt_tuning_init="SAMPLE_VOCAB"),
            rng=np.random.default_rng(seed)),
        "lora": lambda m: get_peft_model(m, LoraConfig(
            r=r, lora_alpha=2 * r, target_modules=list(prunable_linears(m))),
            rng=np.random.default_rng(seed)),
        "full": lambda m: m,
    }
    for name, make in makers.items():
        model, task, _ = small_addition_model(**model_kw)
        peft = make(model)
        offset = num_virtual_tokens if name == "prompt tuning" else 0
        params = [p for p in peft.parameters() if p.requires_grad]
        opt = AdamW(params, lr=(lr or PEFT_LR)[name], weight_decay=0.0)
        rng = np.random.default_rng(seed)
        losses = []
        peft.train()
        for _ in range(steps):
            x, y = plus_one_batch(task, *task.sample_pairs(batch_size, rng))
            logits = peft(x)[:, offset:]
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.data))
        peft.eval()
        out[name] = {"trainable": sum(p.numel() for p in params),
                     "accuracy": task_b_match(peft, offset), "losses": losses}
    return out


def int8_on_model(threshold: float = 6.0, **model_kw) -> dict:
    """Held-out exact match of the addition model with every block Linear swapped for a
    :class:`~minigrad.compress.llm_int8.Linear8bitLt`, without (threshold 0) and with the
    decomposition, and how many outlier dimensions each layer saw on the test set."""
    from .llm_int8 import replace_with_int8_

    model, task, _ = small_addition_model(**model_kw)
    out = {"fp32": exact_match(model, task)}
    for name, th in (("int8", 0.0), ("LLM.int8()", threshold)):
        model, task, _ = small_addition_model(**model_kw)
        layers = replace_with_int8_(model, threshold=th)
        out[name] = exact_match(model, task)
        out[f"{name} outlier dims"] = [int(layer.last_outliers.size) for layer in layers]
    return out


def compression_table(sparsity: float = 0.5, bits=(4, 3), n_calib: int = 128,
                      **model_kw) -> list:
    """Bytes of the block Linear weights and held-out exact match after each method, one
    row per method: [{"method", "bytes", "ratio" (to fp32), "accuracy"}]."""
    from .llm_int8 import replace_with_int8_
    from .storage import semi_structured_nbytes, storage_bytes

    def linears(m):
        return list(prunable_linears(m).values())

    model, task, _ = small_addition_model(**model_kw)
    x = calibration_inputs(task, n_calib)
    fp32 = model_weight_bytes(model, 32)
    rows = [("fp32 (dense)", fp32, exact_match(model, task))]
    for layer in linears(model):
        layer.weight.data = layer.weight.data.astype(np.float16).astype(np.float32)
    rows.append(("fp16 (dense)", model_weight_bytes(model, 16), exact_match(model, task)))
    for method in ("magnitude", "sparsegpt"):
        model, task, _ = small_addition_model(**model_kw)
        compress_linears_(model, x, method, sparsity=sparsity)
        nbytes = sum(storage_bytes(m.weight.data)["csr"] for m in linears(model))
        rows.append((f"{method} {sparsity:.0%}, CSR fp16", nbytes, exact_match(model, task)))
    model, task, _ = small_addition_model(**model_kw)
    compress_linears_(model, x, "sparsegpt 2:4")
    nbytes = sum(semi_structured_nbytes(*m.weight.shape) for m in linears(model))
    rows.append(("sparsegpt 2:4, fp16", nbytes, exact_match(model, task)))
    for b in bits:
        for method in ("rtn", "gptq"):
            model, task, _ = small_addition_model(**model_kw)
            compress_linears_(model, x, method, bits=b, group_size=-1)
            # codes, plus an fp16 scale and a b-bit zero per output row
            nbytes = sum(m.weight.data.size * b / 8 + m.out_features * (2 + b / 8)
                         for m in linears(model))
            rows.append((f"{method.upper()} {b}-bit", int(np.ceil(nbytes)), exact_match(model, task)))
    model, task, _ = small_addition_model(**model_kw)
    layers = replace_with_int8_(model, threshold=6.0)
    rows.append(("LLM.int8()", sum(m.weight_nbytes() for m in layers), exact_match(model, task)))
    return [{"method": m, "bytes": int(nb), "ratio": nb / fp32, "accuracy": acc}
            for m, nb, acc in rows]
