"""SQuAD-style data in any of its layouts -> one flat, checked table.

Three layouts arrive here (``datasets`` has already read the file or the hub id):

- the official SQuAD JSON (``{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}``),
  which ``datasets``' json reader returns as one row with columns ``data`` and ``version``;
- the flat layout of the hub's ``squad`` / ``squad_v2`` and of local jsonl / json / parquet
  files: ``id, title, context, question, answers{text: [...], answer_start: [...]}``;
- flat rows whose ``answers`` is a list of ``{text, answer_start}`` objects.

Every layout becomes the flat one, with the answers as lists, and is checked: each
``answer_start`` must point at its text in the context (or the question is skipped and
counted, with ``options.bad_answers: skip``), contexts and questions must not be empty, and
ids must be unique (predictions are keyed by them).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import datasets

from nlptasks import DataError

FLAT_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": {
            "text": datasets.Sequence(datasets.Value("string")),
            "answer_start": datasets.Sequence(datasets.Value("int32")),
        },
    }
)


def is_nested_squad(split: datasets.Dataset) -> bool:
    """Whether ``split`` is an official SQuAD JSON file as ``datasets`` reads it (one row,
    columns ``data`` and ``version``), or a JSON list of its articles (``title``,
    ``paragraphs``)."""
    columns = set(split.column_names)
    return ("data" in columns and columns <= {"data", "version"}) or (
        "paragraphs" in columns and not columns & {"context", "question", "qas"}
    )


def flatten_nested(split: datasets.Dataset, source: str) -> list[dict[str, Any]]:
    """The questions of an official SQuAD file, one flat row each (answers as lists)."""
    if "paragraphs" in split.column_names:  # the file is the list of articles itself
        return _flatten_articles(list(split), source)
    rows: list[dict[str, Any]] = []
    for file_row in split:
        articles = file_row["data"]
        if not isinstance(articles, list):
            raise _nesting_error(source, "'data' is not a list of articles")
        rows.extend(_flatten_articles(articles, source))
    return rows


def _flatten_articles(articles: list[Any], source: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for a, article in enumerate(articles):
        paragraphs = _field(article, "paragraphs", list, source, f"data[{a}]")
        title = article.get("title") or ""
        for p, paragraph in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            context = _field(paragraph, "context", str, source, where)
            for q, qa in enumerate(_field(paragraph, "qas", list, source, where)):
                qa_where = f"{where}.qas[{q}]"
                qid = _field(qa, "id", (str, int), source, qa_where)
                if isinstance(qid, bool):
                    raise _nesting_error(source, f"{qa_where}.id is bool")
                # Answers are checked here, question by question: one malformed answer
                # must be an error naming its question, not an Arrow type error later.
                question = _field(qa, "question", str, source, qa_where)
                texts, starts = _answer_lists(qa.get("answers"), str(qid), source)
                rows.append(
                    {
                        "id": str(qid),
                        "title": str(title),
                        "context": context,
                        "question": question,
                        "answers": {"text": texts, "answer_start": starts},
                    }
                )
    return rows


def _field(item: Any, key: str, kind: Any, source: str, where: str) -> Any:
    if not isinstance(item, Mapping) or key not in item or item[key] is None:
        raise _nesting_error(source, f"{where} has no '{key}'")
    if not isinstance(item[key], kind):
        raise _nesting_error(source, f"{where}.{key} is {type(item[key]).__name__}")
    return item[key]


def _nesting_error(source: str, problem: str) -> DataError:
    return DataError(
        f"The {source} data is not in the SQuAD layout: {problem}. Use the official layout "
        f"data[].paragraphs[].qas[] or flat rows with id, context, question and answers."
    )


FLATTENED = "nlptasks: questions of an official SQuAD JSON file, one row each"


def read_examples(split: datasets.Dataset, source: str) -> datasets.Dataset:
    """One row per question: an official SQuAD file is flattened (its column names are
    SQuAD's own); flat data is returned as it is (and checked by :func:`normalise_split`)."""
    if not is_nested_squad(split):
        return split
    rows = flatten_nested(split, source)
    if not rows:
        raise DataError(
            f"The {source} SQuAD file has no questions. Point the recipe at SQuAD data."
        )
    info = datasets.DatasetInfo(description=FLATTENED, features=FLAT_FEATURES)
    return datasets.Dataset.from_list(rows, features=FLAT_FEATURES, info=info)


def normalise_split(
    split: datasets.Dataset,
    source: str,
    columns: Mapping[str, str],
    bad_answers: str,
) -> datasets.Dataset:
    """The flat, checked table of one split.

    ``columns`` maps each of id / title / context / question / answers to the column that
    holds it (a flattened SQuAD file has SQuAD's names); ``bad_answers`` is ``error`` or
    ``skip``.
    """
    split = read_examples(split, source)
    if split.info.description == FLATTENED:
        columns = {role: role for role in columns}
    _check_columns(split, source, columns)
    raw_rows = [_row_of(raw, columns) for raw in _iterate(split)]
    rows = [_checked(row, source, bad_answers) for row in raw_rows]
    kept = [row for row in rows if row is not None]
    dropped = sum(
        len(raw["answers"]["text"]) - len(row["answers"]["text"])
        for raw, row in zip(raw_rows, rows, strict=True)
        if row is not None and isinstance(raw["answers"], Mapping)
    )
    if skipped := len(rows) - len(kept):
        warnings.warn(
            f"Skipped {skipped} of {len(rows)} {source} questions: none of their answers' "
            f"answer_start points at the answer text (options.bad_answers=skip).",
            stacklevel=2,
        )
    if dropped:
        warnings.warn(
            f"Dropped {dropped} {source} answers whose answer_start does not point at their "
            f"text; their questions keep their other answers (options.bad_answers=skip).",
            stacklevel=2,
        )
    if not kept:
        raise DataError(f"The {source} data has no questions. Point the recipe at SQuAD data.")
    _check_unique_ids([row["id"] for row in kept], source)
    return datasets.Dataset.from_list(kept, features=FLAT_FEATURES)


def _iterate(split: datasets.Dataset) -> Iterator[dict[str, Any]]:
    yield from split


def _check_columns(split: datasets.Dataset, source: str, columns: Mapping[str, str]) -> None:
    for role in ("id", "context", "question", "answers"):
        column = columns[role]
        if column not in split.column_names:
            raise DataError(
                f"The {source} data has no '{column}' column ({role}); it has "
                f"{', '.join(split.column_names)}. Set options.{role}_column=COLUMN, or use the "
                f"SQuAD layout."
            )


def _row_of(raw: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, Any]:
    return {
        "id": raw.get(columns["id"]),
        "title": raw.get(columns["title"]) or "",
        "context": raw.get(columns["context"]),
        "question": raw.get(columns["question"]),
        "answers": raw.get(columns["answers"]),
    }


def _checked(row: dict[str, Any], source: str, bad_answers: str) -> dict[str, Any] | None:
    """The row with answers as lists, or None when it is skipped; DataError when wrong."""
    if row["id"] is None or str(row["id"]) == "":
        raise DataError(
            f"A {source} question has no id (question: {_short(row['question'])}). Give every "
            f"question a unique id."
        )
    qid = str(row["id"])
    context, question = row["context"], row["question"]
    for role, value in (("context", context), ("question", question)):
        if value is not None and not isinstance(value, str):
            raise DataError(
                f"Question '{qid}' in the {source} data has a {role} that is "
                f"{type(value).__name__}, not text. Give a string."
            )
    if not isinstance(context, str) or not context.strip():
        raise DataError(
            f"Question '{qid}' in the {source} data has an empty context. Remove it or give "
            f"it its passage."
        )
    if not isinstance(question, str) or not question.strip():
        raise DataError(
            f"Question '{qid}' in the {source} data has an empty question. Remove it or fill it in."
        )
    texts, starts = _answer_lists(row["answers"], qid, source)
    good = [
        (text, start)
        for text, start in zip(texts, starts, strict=True)
        if context[start : start + len(text)] == text
    ]
    if len(good) < len(texts):
        if bad_answers == "error":
            text, start = next(
                (t, s) for t, s in zip(texts, starts, strict=True) if (t, s) not in good
            )
            found = context[start : start + len(text)]
            raise DataError(
                f"Question '{qid}' in the {source} data: answer_start {start} points at "
                f"{_short(found)}, not at the answer {_short(text)}. Fix the offset, or set "
                f"options.bad_answers=skip to drop such answers (they are counted)."
            )
        if not good:
            return None  # no usable answer left: the question is skipped (and counted)
        # Only the bad answers go: the question keeps its other gold answers.
        texts, starts = [t for t, _ in good], [s for _, s in good]
    return {
        "id": qid,
        "title": str(row["title"] or ""),
        "context": context,
        "question": question,
        "answers": {"text": texts, "answer_start": starts},
    }


def _answer_lists(answers: Any, qid: str, source: str) -> tuple[list[str], list[int]]:
    """``{text: [...], answer_start: [...]}`` or ``[{text, answer_start}, ...]`` -> two lists;
    no answers at all is an unanswerable question (SQuAD 2.0)."""
    if answers is None:
        raise DataError(
            f"Question '{qid}' in the {source} data has no answers field. Give answers "
            f'{{"text": [...], "answer_start": [...]}} ([] for an unanswerable question).'
        )
    if isinstance(answers, Mapping):
        texts, starts = answers.get("text"), answers.get("answer_start")
    elif isinstance(answers, list) and all(isinstance(a, Mapping) for a in answers):
        texts = [a.get("text") for a in answers]
        starts = [a.get("answer_start") for a in answers]
    else:
        texts = starts = None
    if (
        not isinstance(texts, list)
        or not isinstance(starts, list)
        or len(texts) != len(starts)
        or not all(isinstance(t, str) and t for t in texts)
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in starts)
    ):
        raise DataError(
            f"Question '{qid}' in the {source} data has malformed answers ({_short(answers)}). "
            f'Write {{"text": ["..."], "answer_start": [N]}} with one start per text.'
        )
    return list(texts), list(starts)


def _check_unique_ids(ids: list[str], source: str) -> None:
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise DataError(
            f"Question id '{duplicate}' appears twice in the {source} data. Give every question "
            f"a unique id (predictions and metrics are keyed by it)."
        )


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
