"""Small models built from ``minigrad.nn``, and the loops that train them."""

from .addition import AdditionRun, addition_accuracy, complete_sums, train_addition
from .tinygpt import GPTConfig, TinyGPT

__all__ = ["GPTConfig", "TinyGPT", "AdditionRun", "train_addition", "addition_accuracy",
           "complete_sums"]
