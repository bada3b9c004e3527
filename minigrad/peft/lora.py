"""LoRA: a frozen weight plus a trained low-rank update (Hu et al. 2021).

    h = x W^T + (alpha / r) * x A^T B^T,   W (out, in) frozen,
    A (r, in) ~ Kaiming-uniform,  B (out, r) = 0

Only A and B train: r (in + out) parameters instead of in * out (r = 8 on a
4096 x 4096 layer: 65,536 instead of 16.8 M, 0.4%), so gradients and Adam's
state shrink by the same factor. B starts at zero, so the adapted model
starts exactly where the pretrained one is. alpha / r keeps the update's
scale steady when r changes. After training, W + (alpha / r) B A can be
*merged* into W: no extra cost at inference. Names follow Hugging Face PEFT
(``LoraConfig``, ``get_peft_model``, ``lora_A``, ``lora_B``, ``merge``,
``print_trainable_parameters``).
"""

from __future__ import annotations

import copy
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .. import functional as F
from ..nn import Linear, Module, Parameter
from ..tensor import Tensor, get_rng

__all__ = ["LoraConfig", "LoRALinear", "ModulesToSaveWrapper", "PeftModel", "get_peft_model",
           "lora_parameters", "kaiming_uniform_bound"]


@dataclass
class LoraConfig:
    """Which layers get LoRA, and its rank and scale (PEFT's fields and defaults).

    target_modules: names (a module matches if its dotted name equals one or
        ends with ``"." + name``) or one regular expression (full match).
    modules_to_save: modules kept fully trainable (e.g. a new classifier head): as in PEFT,
        a trainable copy is trained and the frozen original kept beside it.
    init_lora_weights: True (A Kaiming-uniform, B = 0), "gaussian" (A ~ N(0, 1/r^2),
        B = 0) or False (A and B both as a fresh Linear: the adapter starts nonzero).
    use_rslora: scale by lora_alpha / sqrt(r) (rank-stabilized LoRA, Kalajdzievski 2023)
        instead of lora_alpha / r.
    """

    r: int = 8
    lora_alpha: float = 8
    target_modules: list | str | None = None
    lora_dropout: float = 0.0
    modules_to_save: list | None = field(default=None)
    init_lora_weights: bool | str = True
    use_rslora: bool = False

    def __post_init__(self):
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"LoraConfig: r must be a positive integer, got {self.r!r}")
        if not self.lora_alpha > 0:
            raise ValueError(f"LoraConfig: lora_alpha must be > 0, got {self.lora_alpha!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"LoraConfig: lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.target_modules is None:
            raise ValueError("LoraConfig: target_modules is required (e.g. ['q_proj', 'v_proj'])")
        check_init_lora_weights(self.init_lora_weights, "LoraConfig")

    def matches(self, name: str) -> bool:
        t = self.target_modules
        if isinstance(t, str):
            return re.fullmatch(t, name) is not None
        return matches_any(name, t)


def named_slots(model: Module):
    """(parent, attribute, dotted name, child) for every child module below ``model``: the
    places a layer can be swapped for a wrapped one with ``setattr(parent, attribute, new)``."""
    for name, m in list(model.named_modules()):
        for child_name, child in list(m.named_children()):
            yield m, child_name, f"{name}.{child_name}" if name else child_name, child


def matches_any(name: str, targets) -> bool:
    """PEFT's rule for a list of targets: the dotted name equals one or ends with "." + one."""
    return any(name == k or name.endswith("." + k) for k in targets)


def kaiming_uniform_bound(fan_in: int, a: float = math.sqrt(5)) -> float:
    """PyTorch's kaiming_uniform_(a=sqrt(5)) bound, gain * sqrt(3 / fan_in) with
    gain = sqrt(2 / (1 + a^2)): 1 / sqrt(fan_in) for PEFT's lora_A."""
    return math.sqrt(2.0 / (1 + a * a)) * math.sqrt(3.0 / fan_in)


def check_init_lora_weights(init, who: str) -> None:
    # PEFT's other schemes (pissa, olora, loftq, eva, ...) are not implemented: refuse them
    if not (init is True or init is False or init == "gaussian"):    # 1 and 0 are not bools
        raise ValueError(f"{who}: init_lora_weights must be True, False or 'gaussian', "
                         f"got {init!r}")


def lora_parameters(in_features: int, out_features: int, r: int) -> int:
    """Trainable parameters LoRA adds to one (out, in) layer: r (in + out)."""
    return r * (in_features + out_features)


class LoRALinear(Module):
    """A frozen ``base_layer`` (an ``nn.Linear``, or any layer with ``in_features`` /
    ``out_features``, e.g. a 4-bit ``QuantLinear``) plus ``lora_B(lora_A(dropout(x))) * scaling``.

    Shapes: x (..., in) -> (..., out); lora_A.weight (r, in), lora_B.weight (out, r).
    ``scaling`` is lora_alpha / r, or lora_alpha / sqrt(r) with ``use_rslora``.
    """

    def __init__(self, base_layer: Module, r: int = 8, lora_alpha: float = 8,
                 lora_dropout: float = 0.0, rng=None, *, init_lora_weights: bool | str = True,
                 use_rslora: bool = False):
        super().__init__()
        if not hasattr(base_layer, "in_features"):
            raise TypeError(f"LoRALinear: base_layer must be a linear layer, got "
                            f"{type(base_layer).__name__}")
        if not isinstance(r, int) or r < 1:
            raise ValueError(f"LoRALinear: r must be a positive integer, got {r!r}")
        check_init_lora_weights(init_lora_weights, "LoRALinear")
        rng = get_rng() if rng is None else rng
        self.base_layer = base_layer.requires_grad_(False)
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.r, self.lora_alpha, self.lora_dropout = r, lora_alpha, lora_dropout
        self.scaling = lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r
        # the base's float dtype (float64 for gradcheck); a quantized base computes in float32
        dtype = base_layer.weight.dtype if isinstance(base_layer, Linear) else np.float32
        self.lora_A = Linear(self.in_features, r, bias=False, dtype=dtype)
        self.lora_B = Linear(r, self.out_features, bias=False, dtype=dtype)
        if init_lora_weights == "gaussian":
            A = rng.normal(0.0, 1.0 / r, (r, self.in_features))
        else:
            bound = kaiming_uniform_bound(self.in_features)
            A = rng.uniform(-bound, bound, (r, self.in_features))
        if init_lora_weights is False:                                # a fresh Linear's B
            bound = kaiming_uniform_bound(r)
            B = rng.uniform(-bound, bound, (self.out_features, r))
        else:
            B = np.zeros((self.out_features, r))
        self.lora_A.weight = Parameter(A.astype(dtype))
        self.lora_B.weight = Parameter(B.astype(dtype))
        self.merged = False
        self.disabled = False                                         # PeftModel.disable_adapter

    def delta_weight(self) -> np.ndarray:
        """(alpha / r) B A, the (out, in) update LoRA adds to the base weight."""
        # a Python float keeps the weights' dtype (float64 stays float64 to the last bit)
        return (self.lora_B.weight.data @ self.lora_A.weight.data) * self.scaling

    def forward(self, x) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        result = self.base_layer(x)                                   # (..., out), frozen
        if self.merged or self.disabled:
            return result
        # BEGIN SOLUTION ch7.lora_forward
        h = F.dropout(x, self.lora_dropout, self.training)
        update = self.lora_B(self.lora_A(h))                          # (..., in) -> (..., r) -> (..., out)
        return result + update * self.scaling
        # END SOLUTION

    def merge(self) -> None:
        """W <- W + (alpha / r) B A: the adapted layer becomes one plain Linear."""
        if self.merged:
            return
        if not isinstance(self.base_layer, Linear):
            raise TypeError(f"LoRALinear.merge: base_layer must be an nn.Linear to merge into, "
                            f"got {type(self.base_layer).__name__} (a quantized base would need "
                            f"requantizing)")
        # BEGIN SOLUTION ch7.lora_merge
        self.base_layer.weight.data += self.delta_weight()
        # END SOLUTION
        self.merged = True

    def unmerge(self) -> None:
        """Undo :meth:`merge` (W <- W - (alpha / r) B A; equal to the old W up to rounding)."""
        if not self.merged:
            return
        self.base_layer.weight.data -= self.delta_weight()
        self.merged = False

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, " \
               f"scaling={self.scaling:g}, merged={self.merged}"


class ModulesToSaveWrapper(Module):
    """A module of ``modules_to_save``, as PEFT wraps it: the frozen ``original_module`` and
    a trainable copy ``modules_to_save.default`` that the forward uses (the original while
    the adapter is disabled); ``merge_and_unload`` puts the trained copy in its place."""

    def __init__(self, module: Module):
        super().__init__()
        self.original_module = module.requires_grad_(False)
        self.modules_to_save = Module()                               # PEFT's ModuleDict
        self.modules_to_save.default = copy.deepcopy(module).requires_grad_(True)
        self.disabled = False

    def forward(self, *args, **kwargs):
        m = self.original_module if self.disabled else self.modules_to_save.default
        return m(*args, **kwargs)


class PeftModel(Module):
    """The model with LoRA layers swapped in; ``base_model`` is the (modified) original."""

    def __init__(self, model: Module, config: LoraConfig):
        super().__init__()
        self.base_model = model
        self.peft_config = config

    def forward(self, *args, **kwargs):
        return self.base_model(*args, **kwargs)

    def lora_layers(self) -> list:
        return [m for m in self.modules() if isinstance(m, LoRALinear)]

    @contextmanager
    def disable_adapter(self):
        """``with model.disable_adapter():`` the base model's outputs (merged layers are
        unmerged first, ``modules_to_save`` use their originals), as PEFT's."""
        layers = [m for m in self.modules() if isinstance(m, (LoRALinear, ModulesToSaveWrapper))]
        for m in layers:
            if isinstance(m, LoRALinear) and m.merged:
                m.unmerge()                            # as PEFT: it stays unmerged afterwards
            m.disabled = True
        try:
            yield
        finally:
            for m in layers:
                m.disabled = False

    def get_nb_trainable_parameters(self) -> tuple:
        """(trainable parameters, all parameters); a quantized base layer's weights count as
        its in * out values, though they are stored as codes (buffers), as PEFT counts them."""
        params = list(self.parameters())
        stored_as_codes = sum(m.in_features * m.out_features for m in self.modules()
                              if type(m).__name__ == "QuantLinear")
        return (sum(p.numel() for p in params if p.requires_grad),
                sum(p.numel() for p in params) + stored_as_codes)

    def print_trainable_parameters(self) -> str:
        t, a = self.get_nb_trainable_parameters()
        line = f"trainable params: {t:,d} || all params: {a:,d} || trainable%: {100 * t / a:.4f}"
        print(line)
        return line

    def merge_adapter(self):
        for m in self.lora_layers():
            m.merge()

    def unmerge_adapter(self):
        for m in self.lora_layers():
            m.unmerge()

    def merge_and_unload(self) -> Module:
        """Merge every LoRA layer and put its plain base layer back; returns the base model."""
        self.merge_adapter()
        for parent, attr, _, child in named_slots(self.base_model):
            if isinstance(child, LoRALinear):
                setattr(parent, attr, child.base_layer)
            elif isinstance(child, ModulesToSaveWrapper):
                setattr(parent, attr, child.modules_to_save.default)
        return self.base_model


def get_peft_model(model: Module, peft_config, rng=None):
    """Freeze ``model`` and wrap it for the method ``peft_config`` names.

    A :class:`LoraConfig`: replace each Linear whose name matches ``target_modules`` by a
    :class:`LoRALinear` around it (in place); only the LoRA matrices (and
    ``modules_to_save``) stay trainable; returns a :class:`PeftModel`. A
    :class:`~minigrad.peft.prompt_tuning.PromptTuningConfig`: prepend trainable virtual
    tokens; returns a :class:`~minigrad.peft.prompt_tuning.PromptTuningModel`.
    """
    from .prompt_tuning import PromptTuningConfig, PromptTuningModel

    if isinstance(peft_config, PromptTuningConfig):
        return PromptTuningModel(model, peft_config, rng=rng)
    if not isinstance(peft_config, LoraConfig):
        raise TypeError(f"get_peft_model: peft_config must be a LoraConfig or a "
                        f"PromptTuningConfig, got {type(peft_config).__name__}")
    model.requires_grad_(False)
    c = peft_config
    replaced = 0
    for parent, attr, full, child in named_slots(model):
        if not c.matches(full):
            continue
        if not hasattr(child, "in_features"):       # PEFT, too, refuses what it cannot adapt
            raise ValueError(f"get_peft_model: target module {full!r} is a "
                             f"{type(child).__name__}; LoRA here adapts linear layers only")
        setattr(parent, attr, LoRALinear(child, c.r, c.lora_alpha, c.lora_dropout, rng=rng,
                                         init_lora_weights=c.init_lora_weights,
                                         use_rslora=c.use_rslora))
        replaced += 1
    if not replaced:
        names = [n for n, _ in model.named_modules() if n]
        raise ValueError(f"get_peft_model: target_modules {c.target_modules!r} match no "
                         f"linear layer; the model's modules are {names}")
    if c.modules_to_save:
        for parent, attr, full, child in named_slots(model):
            if matches_any(full, c.modules_to_save) and not isinstance(child, LoRALinear):
                setattr(parent, attr, ModulesToSaveWrapper(child))
    return PeftModel(model, peft_config)
