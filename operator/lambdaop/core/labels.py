"""Label selectors, in kubectl's syntax: `team=billing,env!=dev`, `tier in (web,api)`, `!legacy`.

A selector is a list of terms, all of which must hold:

  key=value, key==value   the label is there with that value
  key!=value              the label is not there, or has another value
  key in (a,b)            the label is there with one of the values
  key notin (a,b)         the label is not there, or has none of the values
  key                     the label is there (any value)
  !key                    the label is not there

`parse` answers a `Selector` or raises `SelectorError` saying which term is
wrong and what a term looks like. `Selector.index_values()` gives the
`key=value` pairs one of which every match carries (an index can be read
for them); None when no term says that much. Used by the store and the API.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_KEY = r"[A-Za-z0-9_./-]+(?::[A-Za-z0-9_./-]+)?"
_VALUE = r"[A-Za-z0-9_.:/@+-]*"
_TERM = re.compile(
    rf"^\s*(?:(?P<not>!)\s*(?P<absent>{_KEY})"
    rf"|(?P<key>{_KEY})\s*(?:(?P<op>==|=|!=)\s*(?P<value>{_VALUE})"
    rf"|\s+(?P<set>in|notin)\s*\((?P<values>[^()]*)\))?)\s*$"
)
HELP = "a selector is terms joined by commas: key=value, key!=value, key in (a,b), key notin (a,b), key, !key"


class SelectorError(ValueError):
    """A selector that cannot be read; the message names the term."""


@dataclass(frozen=True)
class Term:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "absent"
    values: tuple[str, ...] = ()

    def holds(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op == "exists":
            return value is not None
        if self.op == "absent":
            return value is None
        if self.op in ("=", "in"):
            return value is not None and value in self.values
        return value is None or value not in self.values  # != and notin


@dataclass(frozen=True)
class Selector:
    terms: tuple[Term, ...]
    text: str = ""

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        return all(t.holds(labels or {}) for t in self.terms)

    def index_values(self) -> list[str] | None:
        """`label_entry` values one of which every matching object carries (the narrowest term's)."""
        positive = [t for t in self.terms if t.op in ("=", "in")]
        if not positive:
            return None
        best = min(positive, key=lambda t: len(t.values))
        return [label_entry(best.key, v) for v in best.values]


def label_entry(key: str, value: str) -> str:
    """How one label is kept in a list index: key and value, joined by a character neither holds."""
    return f"{key}\x1f{value}"


def label_entries(labels: Mapping[str, str] | None) -> list[str]:
    return sorted(label_entry(k, v) for k, v in (labels or {}).items())


def _split(text: str) -> list[str]:
    """Terms are separated by commas outside parentheses."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return out


def parse(text: str) -> Selector:
    """Read a selector; raises SelectorError naming the term that cannot be read."""
    terms = []
    if not text.strip():
        raise SelectorError(f"the selector is empty; {HELP}")
    for raw in _split(text):
        m = _TERM.match(raw)
        if m is None:
            raise SelectorError(f"cannot read {raw.strip()!r} in the selector; {HELP}")
        if m["absent"]:
            terms.append(Term(m["absent"], "absent"))
        elif m["op"]:
            terms.append(Term(m["key"], "!=" if m["op"] == "!=" else "=", (m["value"],)))
        elif m["set"]:
            values = tuple(v.strip() for v in m["values"].split(",") if v.strip())
            if not values:
                raise SelectorError(f"{raw.strip()!r} names no values; write `{m['key']} {m['set']} (a,b)`")
            if not all(re.fullmatch(_VALUE, v) for v in values):
                raise SelectorError(f"cannot read the values of {raw.strip()!r}; {HELP}")
            terms.append(Term(m["key"], m["set"], values))
        else:
            terms.append(Term(m["key"], "exists"))
    return Selector(tuple(terms), text.strip())
