"""Attribute expressions and the content-transfer presets that select CelebA domains A and B.

Grammar (whitespace ignored; ``~`` binds tightest, then ``&``, then ``|``)::

    expr   := term ("|" term)*
    term   := factor ("&" factor)*
    factor := "~" factor | "(" expr ")" | NAME

``NAME`` is a column of ``list_attr_celeba.txt`` (e.g. ``Eyeglasses``) and is true where the file has
``1``; ``~NAME`` is true where it has ``-1``. Nothing is evaluated with ``eval``.

Presets follow the original repositories' selection rules (code convention: A has the content). Where the
originals tested A first and put an image into B only if it was not in A (``if``/``elif``), the B rule
here spells that out (``& ~(...)``), so A and B are always disjoint.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np

from data.errors import DatasetLayoutError


@dataclass(frozen=True)
class Preset:
    a: str
    b: str
    note: str


PRESETS = {
    "glasses": Preset("Eyeglasses", "~Eyeglasses", "Press et al. / Mokady et al. 'glasses'"),
    "facial_hair": Preset(
        "Male & ~5_o_Clock_Shadow & (Mustache | Goatee | ~No_Beard)",
        "Male & ~5_o_Clock_Shadow & No_Beard & ~Mustache & ~Goatee",
        "the originals' 'beard' (Mokady et al.'s facial-hair / 'mustache' checkpoint); B excludes A"),
    "smile": Preset("Smiling", "~Smiling", "the originals' 'custom' with attribute 32 (Smiling)"),
    "mouth": Preset("Mouth_Slightly_Open", "~Mouth_Slightly_Open", "the originals' 'mouth'"),
    "female_glasses": Preset("Eyeglasses & ~Male", "~Eyeglasses & ~Male", "Mokady et al. 'female_glasses'"),
    "male_glasses": Preset("Eyeglasses & Male", "~Eyeglasses & Male", "Mokady et al. 'male_glasses'"),
    "blond_women": Preset(
        "~Male & ~Blond_Hair & Black_Hair", "~Male & Blond_Hair & ~Black_Hair",
        "Mokady et al. 'blond_women': A = black-haired women, B = blond women"),
    "bald": Preset(
        "Male & ~Bald & ~Wearing_Hat & ~Young",
        "Male & Bald & ~Wearing_Hat & ~Receding_Hairline & ~Gray_Hair",
        "Mokady et al. 'bald': A = older men with hair, B = bald men (no shadow check, as in the code)"),
}
PRESET_ALIASES = {"beard": "facial_hair", "mustache": "facial_hair"}

_TOKEN = re.compile(r"\s*(?:([()~&|])|([A-Za-z0-9_]+)|(\S))")


class AttributeExpressionError(DatasetLayoutError):
    """An attribute expression that does not parse or names an unknown attribute."""


def _tokens(text: str):
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m.group(3):
            raise AttributeExpressionError(
                f"unexpected character {m.group(3)!r} at column {m.start(3) + 1} of {text!r}; "
                "use attribute names with ~ (not), & (and), | (or) and parentheses")
        out.append((m.group(1) or m.group(2), m.start(1) if m.group(1) else m.start(2)))
        pos = m.end()
    return out


def _suggest(name: str, names, whole: bool = False) -> str:
    """A hint for an unknown attribute; ``whole``: the name is the entire expression, so a lower-case one
    may be a misspelt preset (``glases`` -> the preset ``glasses``; attribute names are capitalised)."""
    lower = {n.lower(): n for n in names}
    if name.lower() in lower:
        return f"; did you mean {lower[name.lower()]!r}?"
    preset = difflib.get_close_matches(name, [*PRESETS, *PRESET_ALIASES], 1, 0.75) if whole and name.islower() else []
    if preset:
        return f"; did you mean the preset {preset[0]!r}?"
    near = difflib.get_close_matches(name, names, 1, 0.6)
    if near:
        return f"; did you mean {near[0]!r}?"
    return f"; known attributes: {', '.join(names)}"


def check_preset(name: str) -> str:
    """``name`` if it is a preset or an alias, else an error suggesting the closest preset."""
    if name in PRESETS or name in PRESET_ALIASES:
        return name
    near = difflib.get_close_matches(name.lower(), [*PRESETS, *PRESET_ALIASES], 1, 0.6)
    hint = f"did you mean {near[0]!r}? " if near else ""
    raise AttributeExpressionError(f"unknown preset {name!r}; {hint}presets: {', '.join(PRESETS)} "
                                   f"(aliases {', '.join(PRESET_ALIASES)}); --attributes takes an expression")


def parse(text: str, names) -> tuple:
    """Parse ``text`` into a small tree over attribute column indices (errors name the column)."""
    names = list(names)
    toks = _tokens(text)
    if not toks:
        raise AttributeExpressionError("empty attribute expression")
    pos = 0

    def peek():
        return toks[pos][0] if pos < len(toks) else None

    def fail(what):
        at = f"column {toks[pos][1] + 1} of" if pos < len(toks) else "the end of"
        raise AttributeExpressionError(f"{what} at {at} {text!r}")

    def expr():
        nonlocal pos
        node = term()
        while peek() == "|":
            pos += 1
            node = ("or", node, term())
        return node

    def term():
        nonlocal pos
        node = factor()
        while peek() == "&":
            pos += 1
            node = ("and", node, factor())
        return node

    def factor():
        nonlocal pos
        tok = peek()
        if tok == "~":
            pos += 1
            return ("not", factor())
        if tok == "(":
            pos += 1
            node = expr()
            if peek() != ")":
                fail("expected ')'")
            pos += 1
            return node
        if tok is None or tok in ")&|":
            fail("expected an attribute name, '~' or '('")
        if tok not in names:
            raise AttributeExpressionError(f"unknown attribute {tok!r} in {text!r}"
                                           f"{_suggest(tok, names, whole=text.strip() == tok)}")
        pos += 1
        return ("name", names.index(tok))

    node = expr()
    if pos != len(toks):
        fail(f"unexpected {peek()!r}")
    return node


def evaluate(node: tuple, values: np.ndarray) -> np.ndarray:
    """Boolean mask over rows of ``values`` (N, K) holding CelebA's -1/1 labels."""
    op = node[0]
    if op == "name":
        return values[:, node[1]] == 1
    if op == "not":
        return ~evaluate(node[1], values)
    a, b = evaluate(node[1], values), evaluate(node[2], values)
    return a & b if op == "and" else a | b


def resolve(rule: str, rule_b: str | None = None) -> tuple[str, str, str]:
    """``(expression A, expression B, label)`` for a preset name or an expression for A.

    A custom A without ``rule_b`` gets B = ``~(A)``: every image without the content (for CelebA's
    binary labels this is also the originals' "every other image").
    """
    key = PRESET_ALIASES.get(rule.strip(), rule.strip())  # preset names are lower case, attributes are not
    if key in PRESETS:
        if rule_b:
            raise AttributeExpressionError(f"preset {rule!r} defines domain B itself; give an expression for "
                                           "A (not a preset) to choose B")
        return PRESETS[key].a, PRESETS[key].b, key
    return rule, rule_b or f"~({rule})", "custom"


def select(values: np.ndarray, names, rule_a: str, rule_b: str, files=None) -> tuple[np.ndarray, np.ndarray]:
    """Masks of domains A and B; an error if either is empty or they overlap."""
    a = evaluate(parse(rule_a, names), values)
    b = evaluate(parse(rule_b, names), values)
    for dom, m, r in (("A", a, rule_a), ("B", b, rule_b)):
        if not m.any():
            raise DatasetLayoutError(f"domain {dom} ({r}) selects no images out of {len(values)}")
    both = np.flatnonzero(a & b)
    if len(both):
        eg = f" (e.g. {files[both[0]]})" if files is not None else ""
        raise DatasetLayoutError(
            f"domains A ({rule_a}) and B ({rule_b}) overlap on {len(both)} images{eg}; make B exclude A, "
            f"e.g. B = '({rule_b}) & ~({rule_a})'")
    return a, b
