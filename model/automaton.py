"""Patterns compiled into deterministic automata, written as GBNF rules.

A pattern (parsed by :mod:`model.pattern`) becomes a deterministic automaton, one grammar rule
per state, so llama.cpp's grammar follows a single path however the pattern nests. Written as
nested GBNF repetitions, ``^([a-z]{0,50}){0,50}$`` holds thousands of ambiguous parse stacks
and costs llama.cpp time exponential in a token's length: it froze the engine. Here every
token is checked along one path, in time linear in its length.

The cost of building it is bounded, and a pattern past a bound is refused: written out with
every quantifier expanded it has at most :data:`MAX_EXPANDED` characters, and subset
construction stops at :data:`MAX_STATES` states or :data:`MAX_WORK` steps (about 50 ms on a
small CPU). Ambiguous bounded repetitions need many states: ``^(\\w{1,40}\\s?){1,50}$`` or an
e-mail pattern with ``{1,255}`` domains is refused, while the same shapes with ``+`` are small.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from .pattern import (
    Alt,
    Chars,
    CharSet,
    Node,
    PatternError,
    Seq,
    merge_chars,
    parse_pattern,
)

__all__ = ["MAX_EXPANDED", "MAX_STATES", "MAX_WORK", "Automaton", "compile_pattern"]

#: Characters written out with every quantifier expanded (``[a-z]{0,1000}`` is 1000).
MAX_EXPANDED: Final = 4000
#: States of the deterministic automaton (``[a-z]{0,1000}`` needs 1001).
MAX_STATES: Final = 2000
#: Construction steps (the sizes of the state sets visited), which bound the compile time.
MAX_WORK: Final = 50_000


def _expanded(node: Node, limit: int) -> int:
    """Characters ``node`` holds with every quantifier written out (stops past ``limit``)."""
    if isinstance(node, Chars):
        return 1
    if isinstance(node, Seq | Alt):
        total = 0
        for part in node.items if isinstance(node, Seq) else node.options:
            total += _expanded(part, limit)
            if total > limit:
                break
        return total
    copies = node.high if node.high is not None else node.low + 1
    return _expanded(node.item, limit) * copies if copies else 0


class _NFA:
    """Thompson's construction: ε-moves and character-set moves between numbered states."""

    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.moves: list[list[tuple[CharSet, int]]] = []

    def state(self) -> int:
        self.eps.append([])
        self.moves.append([])
        return len(self.eps) - 1

    def build(self, node: Node, start: int) -> int:
        """Add ``node`` after state ``start``; returns its end state (no move enters start)."""
        if isinstance(node, Chars):
            end = self.state()
            if node.chars:
                self.moves[start].append((node.chars, end))
            return end
        if isinstance(node, Seq):
            for item in node.items:
                start = self.build(item, start)
            return start
        if isinstance(node, Alt):
            end = self.state()
            for option in node.options:
                entry = self.state()
                self.eps[start].append(entry)
                self.eps[self.build(option, entry)].append(end)
            return end
        for _ in range(node.low):
            start = self.build(node.item, start)
        end = self.state()
        if node.high is None:
            loop = self.state()
            self.eps[start].append(loop)
            self.eps[self.build(node.item, loop)].append(loop)
            self.eps[loop].append(end)
            return end
        for _ in range(node.high - node.low):
            self.eps[start].append(end)
            start = self.build(node.item, start)
        self.eps[start].append(end)
        return end

    def closure(self, states: Iterable[int]) -> frozenset[int]:
        seen = set(states)
        todo = list(seen)
        while todo:
            for nxt in self.eps[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return frozenset(seen)


def _partition(
    moves: Sequence[tuple[CharSet, frozenset[int]]],
) -> list[tuple[CharSet, frozenset[int]]]:
    """Disjoint character sets, each with the union of the targets of the moves covering it."""
    bounds = sorted({b for chars, _ in moves for lo, hi in chars for b in (lo, hi + 1)})
    starts = [[lo for lo, _ in chars] for chars, _ in moves]
    pieces: dict[frozenset[int], list[tuple[int, int]]] = {}
    for lo, nxt in itertools.pairwise(bounds):
        targets: set[int] = set()
        for (chars, target), firsts in zip(moves, starts, strict=True):
            k = bisect.bisect_right(firsts, lo) - 1
            if k >= 0 and chars[k][1] >= lo:
                targets |= target
        if targets:
            pieces.setdefault(frozenset(targets), []).append((lo, nxt - 1))
    return [(merge_chars(spans), targets) for targets, spans in pieces.items()]


@dataclass(frozen=True, slots=True)
class Automaton:
    """A pattern as a deterministic automaton over JSON string characters; state 0 starts.

    Every state can still reach an accepting one (dead states are removed).
    """

    source: str
    accepting: tuple[bool, ...]
    moves: tuple[tuple[tuple[CharSet, int], ...], ...]

    def rules(self, names: Sequence[str]) -> list[str]:
        """GBNF bodies, one per state, given each state's rule name (``names[0]`` starts).

        A transition into a state that only accepts needs no rule for it.
        """
        bodies = []
        for state, moves in enumerate(self.moves):
            options = []
            for chars, target in moves:
                ref = "" if self.final(target) else f" {names[target]}"
                options.append(_gbnf_class(chars) + ref)
            if self.accepting[state]:
                options.append('""')
            bodies.append(" | ".join(options))
        return bodies

    def final(self, state: int) -> bool:
        """Whether ``state`` accepts and nothing may follow."""
        return self.accepting[state] and not self.moves[state]


def _gbnf_class(chars: CharSet) -> str:
    def one(code: int) -> str:
        if code < 0x100:
            return f"\\x{code:02X}"
        return f"\\u{code:04X}" if code < 0x10000 else f"\\U{code:08X}"

    return "[" + "".join(one(lo) if lo == hi else f"{one(lo)}-{one(hi)}" for lo, hi in chars) + "]"


def compile_pattern(pattern: str, where: str) -> Automaton:
    """Parse, check and compile ``pattern``; ``where`` (a schema path) is named in errors.

    :raises ~model.pattern.PatternError: malformed, not enforceable, never matching, or past
        a bound (see the module notes).
    """
    tree = parse_pattern(pattern, where)
    if _expanded(tree, MAX_EXPANDED) > MAX_EXPANDED:
        raise PatternError(
            f"the pattern at {where} is too large to enforce: written out without "
            f"quantifiers it exceeds {MAX_EXPANDED} characters"
        )
    nfa = _NFA()
    first = nfa.state()
    last = nfa.build(tree, first)
    states = [nfa.closure([first])]
    index = {states[0]: 0}
    moves: list[list[tuple[CharSet, int]]] = []
    work = 0
    for current in states:  # grows while it is walked
        work += len(current)
        if work > MAX_WORK:
            raise _too_complex(where)
        grouped: dict[CharSet, set[int]] = {}
        for s in current:
            for chars, t in nfa.moves[s]:
                grouped.setdefault(chars, set()).add(t)
        row = []
        for chars, targets in _partition([(c, frozenset(t)) for c, t in grouped.items()]):
            target = nfa.closure(targets)
            if target not in index:
                if len(states) >= MAX_STATES:
                    raise _too_complex(where)
                index[target] = len(states)
                states.append(target)
            row.append((chars, index[target]))
        moves.append(row)
    return _live(pattern, [last in s for s in states], moves, where)


def _too_complex(where: str) -> PatternError:
    return PatternError(
        f"the pattern at {where} is too complex to enforce: its automaton grows past "
        f"{MAX_STATES} states or {MAX_WORK} steps (bounded repetitions that overlap, like "
        "(\\w{1,40} ?){1,50}, multiply; + or * instead of large bounds keep it small)"
    )


def _live(
    source: str, accepting: list[bool], moves: list[list[tuple[CharSet, int]]], where: str
) -> Automaton:
    """The automaton without states that cannot reach an accepting one."""
    into: list[list[int]] = [[] for _ in moves]
    for state, row in enumerate(moves):
        for _, target in row:
            into[target].append(state)
    alive = {s for s, ok in enumerate(accepting) if ok}
    todo = list(alive)
    while todo:
        for source_state in into[todo.pop()]:
            if source_state not in alive:
                alive.add(source_state)
                todo.append(source_state)
    if 0 not in alive:
        raise PatternError(f"the pattern at {where} can never match a JSON string")
    kept = sorted(alive)
    renumber = {old: new for new, old in enumerate(kept)}
    return Automaton(
        source,
        tuple(accepting[s] for s in kept),
        tuple(tuple((chars, renumber[t]) for chars, t in moves[s] if t in alive) for s in kept),
    )
