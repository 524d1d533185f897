"""Probe items: a record that mentions one group and its counterfactual for another group.

Records come from real eval data first (the records' text fields are searched for identity
terms); a dimension with fewer than ``min_matches`` matching records is topped up with
templates fit for the task's input shape. Every item is stored in a fixed orientation
(``a`` is the version of the pair's first group, ``b`` of its second), so that a signed
difference ``b - a`` means the same thing whichever version was the real one.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nlptasks.probes import templates
from nlptasks.probes.swap import mention, mentions_any, swap_record
from nlptasks.probes.wordlists import Dimension

Record = dict[str, str]


@dataclass(frozen=True)
class Item:
    """One counterfactual pair of records."""

    dimension: str
    group_a: str
    group_b: str
    a: Record
    b: Record
    original: str
    """The group the real (or template) record mentions: ``group_a`` or ``group_b``."""
    origin: str
    """"data" (an eval record) or "template"."""

    @property
    def pair(self) -> str:
        return f"{self.group_a} vs {self.group_b}"


@dataclass
class Collected:
    """The items of every dimension and how they were found."""

    items: list[Item] = field(default_factory=list)
    matched: dict[str, int] = field(default_factory=dict)
    """Per dimension: how many eval records mention exactly one of its groups."""
    used: dict[str, int] = field(default_factory=dict)
    """Per dimension: how many of those became items (at most ``max_examples``)."""
    templates: dict[str, int] = field(default_factory=dict)
    """Per dimension: how many template records were added."""
    mixed: dict[str, int] = field(default_factory=dict)
    """Per dimension: eval records left out because they mention several of its groups."""


def collect(
    records: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
    dimensions: Sequence[Dimension],
    template_records: Mapping[str, list[Record]],
    max_examples: int,
    min_matches: int,
    seed: int,
) -> Collected:
    """Items for each dimension from ``records`` (their ``fields`` searched and swapped),
    topped up from ``template_records[dimension]`` when fewer than ``min_matches`` match."""
    found = Collected()
    rng = random.Random(seed)
    for dimension in dimensions:
        matches: list[tuple[Record, str]] = []
        mixed = 0
        for record in records:
            text = " ".join(str(record.get(f, "")) for f in fields)
            said = mention(dimension, text)
            if said is not None:
                matches.append(({k: str(v) for k, v in record.items()}, said.group))
            elif mentions_any(dimension, text):
                mixed += 1
        found.matched[dimension.name] = len(matches)
        found.mixed[dimension.name] = mixed
        if len(matches) > max_examples:  # a seeded sample, kept in the data's order
            keep = sorted(rng.sample(range(len(matches)), max_examples))
            matches = [matches[i] for i in keep]
        found.used[dimension.name] = len(matches)
        added = 0
        # Templates top up a dimension the data rarely mentions, judged on what matched
        # (a small --max-examples sample is no reason to measure templates instead).
        if found.matched[dimension.name] < min_matches:
            first = next(iter(dimension.groups))
            for record in template_records.get(dimension.name, []):
                matches.append((record, first))
                added += 1
        found.templates[dimension.name] = added
        real = found.used[dimension.name]
        for number, (record, group) in enumerate(matches):
            origin = "data" if number < real else "template"
            found.items.extend(_pairs(dimension, record, group, fields, origin))
    return found


def template_records(
    pipeline_tag: str, fields: Sequence[str], dimensions: Sequence[Dimension]
) -> dict[str, list[Record]]:
    """Templates per dimension in the shape of the task's records: one text field, or a
    question and context; none for other shapes (say so: the eval data must do)."""
    out: dict[str, list[Record]] = {}
    for dimension in dimensions:
        if pipeline_tag == "question-answering" and {"question", "context"} <= set(fields):
            out[dimension.name] = [
                {"context": context, "question": question}
                for context, question in templates.qa_pairs(dimension)
            ]
        elif len(fields) == 1:
            out[dimension.name] = [{fields[0]: s} for s in templates.sentences(dimension)]
    return out


def _pairs(
    dimension: Dimension, record: Record, group: str, fields: Sequence[str], origin: str
) -> list[Item]:
    names = list(dimension.groups)
    items = []
    for other in names:
        if other == group:
            continue
        swapped = swap_record(dimension, record, fields, group, other)
        if swapped == record:
            continue  # nothing changed (a term without a counterpart): not a counterfactual
        first, second = sorted((group, other), key=names.index)
        a, b = (record, swapped) if first == group else (swapped, record)
        items.append(Item(dimension.name, first, second, a, b, group, origin))
    return items
