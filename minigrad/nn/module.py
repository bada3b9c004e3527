"""Module and Parameter: the containers a network is built from (as ``torch.nn``)."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from ..tensor import Tensor


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):

    """A tensor that is a trainable weight: ``requires_grad=True`` by default and
    found by :meth:`Module.parameters`."""

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data.data if isinstance(data, Tensor) else data,
                         requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model.

    Assigning a :class:`Parameter` or a ``Module`` as an attribute registers
    it, so ``parameters()``, ``state_dict()``, ``train()``/``eval()`` reach
    everything below. Subclasses define ``forward``; call the module itself.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                                 f"before assigning {name!r}")
        if name in self._buffers and (value is None or isinstance(value, np.ndarray)):
            self._buffers[name] = value  # reassigning a buffer keeps it a buffer, as in PyTorch
            object.__setattr__(self, name, value)
            return
        # replacing a parameter by a parameter, or a child by a child, keeps its
        # place in the registry (a Sequential's order; swapping in LoRA or QAT layers)
        for d, kind in ((self._parameters, Parameter), (self._modules, Module), (self._buffers, None)):
            if name in d and not (kind is not None and isinstance(value, kind)):
                del d[name]
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array: np.ndarray):
        """A non-trained array that belongs in the state_dict (e.g. a mask)."""
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- traversal -----------------------------------------------------------------
    def named_children(self):
        yield from self._modules.items()

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "", memo=None, remove_duplicate: bool = True):
        """Every module below (and including) this one with its dotted name; a module reused
        in two places once, unless ``remove_duplicate=False`` (state_dict's view: each place)."""
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name, memo,
                                       remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = ""):
        seen = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if id(p) in seen:  # a shared (tied) weight is listed once
                    continue
                seen.add(id(p))
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # -- modes and gradients -------------------------------------------------------
    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True):
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad[...] = 0

    def requires_grad_(self, requires_grad: bool = True):
        """Freeze (False) or unfreeze (True) every parameter below this module."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    # -- state -----------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Name -> a copy of every parameter and buffer array (a shared module's
        under each of its names, as in PyTorch)."""
        sd = OrderedDict()
        for mname, m in self.named_modules(remove_duplicate=False):
            for kind in (m._parameters, m._buffers):
                for name, v in kind.items():
                    arr = v.data if isinstance(v, Tensor) else v
                    sd[f"{mname}.{name}" if mname else name] = np.array(arr, copy=True)
        return sd

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays into the parameters and buffers; shapes must match exactly.

        Every key and shape is checked before anything is copied, so a failed
        load leaves the model as it was. Returns ``(missing_keys,
        unexpected_keys)`` (empty when ``strict``), as PyTorch does.
        """
        own = {}
        for mname, m in self.named_modules(remove_duplicate=False):
            for kind in ("_parameters", "_buffers"):
                for name in getattr(m, kind):
                    own[f"{mname}.{name}" if mname else name] = (m, kind, name)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        copies = []
        for key, (m, kind, name) in own.items():
            if key not in state_dict:
                continue
            src = np.asarray(state_dict[key].data if isinstance(state_dict[key], Tensor)
                             else state_dict[key])
            dst = getattr(m, kind)[name]
            dst_arr = dst.data if isinstance(dst, Tensor) else dst
            if src.shape != dst_arr.shape:
                raise ValueError(f"load_state_dict: {key} has shape {src.shape} in the state dict "
                                 f"but {dst_arr.shape} in the model")
            copies.append((dst_arr, src))
        for dst_arr, src in copies:
            dst_arr[...] = src
        return IncompatibleKeys(missing, unexpected)

    # -- printing ----------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"
