"""A tiny generated NER dataset (``data.dataset: tiny-ner``): enough for a tiny model to learn
in seconds and for the offline recipe to show entity F1 rising; no download."""

from __future__ import annotations

from typing import Any

PEOPLE = ["Anna Berg", "Tom", "Maria Lopez", "Chen Wei", "Omar", "Lucy Grant"]
PLACES = ["Paris", "Lagos", "New York", "Oslo", "Lima", "Cape Town"]
ORGS = ["Acme Corp", "the United Nations", "Siemens", "Oxfam", "the BBC"]
PATTERNS = [
    "{per} flew to {loc} on Monday .",
    "{per} works for {org} in {loc} .",
    "{org} opened an office in {loc} .",
    "In {loc} , {per} met the head of {org} .",
    "{per} said {org} will hire more staff .",
]


def _tagged(pattern: str, **names: str) -> tuple[list[str], list[str]]:
    kinds = {"per": "PER", "loc": "LOC", "org": "ORG"}
    tokens: list[str] = []
    tags: list[str] = []
    for part in pattern.split():
        key = part.strip("{}")
        if part.startswith("{") and key in names:
            words = names[key].split()
            # "the United Nations": the article is not part of the entity.
            lead = 1 if words[0] == "the" else 0
            tokens += words
            tags += ["O"] * lead + [
                ("B-" if i == lead else "I-") + kinds[key] for i in range(lead, len(words))
            ]
        else:
            tokens.append(part)
            tags.append("O")
    return tokens, tags


def sentences() -> list[tuple[list[str], list[str]]]:
    """240 (tokens, tags) pairs, every pattern with several names."""
    rows = []
    # Every name in every role, in shifting combinations (not all 180 of them).
    for i in range(48):
        per, loc, org = PEOPLE[i % 6], PLACES[(i + i // 6) % 6], ORGS[i % 5]
        for pattern in PATTERNS:
            rows.append(_tagged(pattern, per=per, loc=loc, org=org))
    return rows


def load_tiny_ner(config: Any = None) -> Any:
    """``train`` (the first 200 sentences) and ``validation`` (the last 40)."""
    import datasets

    rows = sentences()

    def split(part: list[tuple[list[str], list[str]]]) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {"tokens": [t for t, _ in part], "ner_tags": [g for _, g in part]}
        )

    return datasets.DatasetDict({"train": split(rows[:200]), "validation": split(rows[200:])})
