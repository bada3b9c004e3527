"""Project-wide rules that a single careless line would break."""

import re
from pathlib import Path

from minigrad.exercises.registry import chapter_modules

ROOT = Path(__file__).resolve().parents[1]
LIB = sorted((ROOT / "minigrad").rglob("*.py"))


def _code_lines(path):
    for i, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if s and not s.startswith("#"):
            yield i, s


def test_the_library_never_imports_torch():
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in LIB for i, s in _code_lines(p)
           if re.match(r"(import torch\b|from torch\b)", s)]
    assert not bad, f"PyTorch may appear only in tests and benchmarks: {bad}"


def test_randomness_goes_through_the_seeded_generator():
    # np.random.default_rng / Generator are fine; the legacy global-state API is not
    pattern = re.compile(r"np\.random\.(seed|rand|randn|randint|random|normal|uniform|choice|shuffle|permutation)\(")
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in LIB for i, s in _code_lines(p) if pattern.search(s)]
    assert not bad, f"use minigrad.get_rng() or an rng argument: {bad}"


def test_exercise_ids_live_in_their_chapters_module():
    for mod in chapter_modules():
        n = int(mod.__name__.rsplit(".", 1)[-1][2:4])
        for item in list(getattr(mod, "EXERCISES", [])) + list(getattr(mod, "QUESTIONS", [])):
            assert item.chapter == n, f"{item.id} is declared in {mod.__name__}"
            assert item.points > 0


def test_notebooks_and_tour_sections_follow_the_naming_scheme():
    for p in (ROOT / "notebooks").glob("*.ipynb"):
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", p.name), p.name
    for p in (ROOT / "minigrad" / "tour").glob("ch*.py"):
        assert re.fullmatch(r"ch\d\d_[a-z0-9_]+\.py", p.name), p.name
