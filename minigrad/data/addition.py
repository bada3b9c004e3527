"""Digit addition as a language-modelling task: "123+456=9750".

Each example is one fixed-length string: two zero-padded n-digit operands and
their (n+1)-digit sum. By default the sum is written least-significant digit
first ("579" -> "0579" -> "9750"), the order in which carries are computed, so
each answer digit depends only on digits the model has already seen; small
transformers learn reversed sums far faster than plain ones (Lee et al. 2023,
"Teaching Arithmetic to Small Transformers").

A held-out set of operand pairs never appears in training, so accuracy on it
measures addition learned, not memorised.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..tensor import get_rng

__all__ = ["CharTokenizer", "AdditionTask", "IGNORE_INDEX"]

IGNORE_INDEX = -100  # cross_entropy's default: prompt positions carry no loss


class CharTokenizer:
    """One token per character of ``vocab``: encode str -> int64 ids, decode ids -> str."""

    def __init__(self, vocab: str = "0123456789+="):
        if len(set(vocab)) != len(vocab):
            raise ValueError(f"CharTokenizer: vocab has repeated characters: {vocab!r}")
        self.vocab = vocab
        self.stoi = {c: i for i, c in enumerate(vocab)}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        bad = sorted(set(text) - set(self.stoi))
        if bad:
            raise ValueError(f"CharTokenizer.encode: characters {bad} are not in the vocab "
                             f"{self.vocab!r}")
        return np.array([self.stoi[c] for c in text], dtype=np.int64)

    def decode(self, ids) -> str:
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.vocab)):
            raise ValueError(f"CharTokenizer.decode: ids must be in [0, {len(self.vocab)}), "
                             f"got range [{ids.min()}, {ids.max()}]")
        return "".join(self.vocab[i] for i in ids)


class AdditionTask:
    """n-digit addition strings, with a held-out test set of operand pairs.

    Args:
        n_digits: digits per operand (1..6).
        n_test: operand pairs held out for testing (drawn once, never trained on).
        reverse_answer: write the sum least-significant digit first.
        rng: generator for the held-out draw; None means ``minigrad.get_rng()``.

    Attributes:
        prompt_len: characters up to and including "=" (2 n + 2).
        answer_len: n + 1 digits.
        seq_len: prompt_len + answer_len.
        test_a, test_b: the held-out operands, int64 arrays of length n_test.
    """

    def __init__(self, n_digits: int = 3, n_test: int = 1000, reverse_answer: bool = True,
                 rng=None):
        if not isinstance(n_digits, numbers.Integral) or not 1 <= n_digits <= 6:
            raise ValueError(f"AdditionTask: n_digits must be an integer in [1, 6], got {n_digits!r}")
        n_pairs = 10 ** (2 * n_digits)
        if not isinstance(n_test, numbers.Integral) or not 0 <= n_test <= n_pairs // 2:
            raise ValueError(f"AdditionTask: n_test must be in [0, {n_pairs // 2}] (half of the "
                             f"{n_pairs} pairs), got {n_test!r}")
        self.n_digits, self.reverse_answer = int(n_digits), bool(reverse_answer)
        self.tokenizer = CharTokenizer("0123456789+=")
        self.prompt_len = 2 * n_digits + 2
        self.answer_len = n_digits + 1
        self.seq_len = self.prompt_len + self.answer_len
        rng = get_rng() if rng is None else rng
        ids = np.sort(rng.choice(n_pairs, size=n_test, replace=False)).astype(np.int64)
        self._test_ids = ids
        self.test_a, self.test_b = ids // 10 ** n_digits, ids % 10 ** n_digits

    def format(self, a: int, b: int) -> str:
        """The full example string, e.g. ``format(123, 456) == "123+456=9750"``."""
        n = self.n_digits
        s = f"{a + b:0{n + 1}d}"
        return f"{a:0{n}d}+{b:0{n}d}=" + (s[::-1] if self.reverse_answer else s)

    def encode_pairs(self, a, b) -> np.ndarray:
        """Token ids of the full strings for operand arrays ``a``, ``b``: (N, seq_len)."""
        a, b = np.asarray(a, dtype=np.int64).reshape(-1), np.asarray(b, dtype=np.int64).reshape(-1)
        n = self.n_digits
        lim = 10 ** n
        if a.shape != b.shape or (a.size and (a.min() < 0 or b.min() < 0 or a.max() >= lim
                                              or b.max() >= lim)):
            raise ValueError(f"AdditionTask.encode_pairs: a and b must be equal-length arrays of "
                             f"integers in [0, {lim}), got shapes {a.shape}, {b.shape}")
        digits = lambda x, k: (x[:, None] // 10 ** np.arange(k - 1, -1, -1)) % 10  # noqa: E731
        s = digits(a + b, n + 1)
        if self.reverse_answer:
            s = s[:, ::-1]
        N = a.size
        plus = np.full((N, 1), self.tokenizer.stoi["+"])
        eq = np.full((N, 1), self.tokenizer.stoi["="])
        return np.concatenate([digits(a, n), plus, digits(b, n), eq, s], axis=1)  # digit d -> id d

    def decode_answer(self, answer_ids) -> np.ndarray:
        """The integer each row of answer digits (N, answer_len) stands for."""
        d = np.asarray(answer_ids).reshape(-1, self.answer_len)
        if self.reverse_answer:
            d = d[:, ::-1]
        ok = (d >= 0) & (d <= 9)
        value = (np.where(ok, d, 0) * 10 ** np.arange(self.answer_len - 1, -1, -1)).sum(axis=1)
        return np.where(ok.all(axis=1), value, -1)  # -1 marks a non-digit in the answer

    def sample_pairs(self, n: int, rng=None):
        """``n`` random training pairs (a, b), never one of the held-out pairs."""
        rng = get_rng() if rng is None else rng
        lim = 10 ** self.n_digits
        ids = rng.integers(0, lim * lim, size=n)
        while True:  # redraw the few that hit the test set
            bad = np.isin(ids, self._test_ids)
            if not bad.any():
                break
            ids[bad] = rng.integers(0, lim * lim, size=int(bad.sum()))
        return ids // lim, ids % lim

    def batch(self, a, b):
        """Language-model inputs and targets for pairs (a, b).

        Returns:
            x: (N, seq_len - 1) token ids, the string without its last character.
            y: (N, seq_len - 1) the next character at every position, with
               ``IGNORE_INDEX`` where the next character is still prompt: the
               loss is on the answer digits only.
        """
        ids = self.encode_pairs(a, b)                     # (N, seq_len)
        x, y = ids[:, :-1], ids[:, 1:].copy()             # predict character t+1 from 0..t
        y[:, :self.prompt_len - 1] = IGNORE_INDEX
        return x, y

    def train_batch(self, batch_size: int, rng=None):
        """A batch of fresh training examples, as :meth:`batch`."""
        return self.batch(*self.sample_pairs(batch_size, rng))
