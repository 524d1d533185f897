"""Question + context -> overlapping token windows, with answer spans as token positions.

As in transformers' ``run_qa`` examples: a context longer than ``max_length`` is cut into
windows that overlap by ``doc_stride`` tokens (the tokenizer's overflow), each window keeps
the offset mapping of its context tokens (-1 for the question and special tokens) and the
index of its example, and the answer is labelled in the windows that hold it whole; the
others point at the CLS token ("no answer here"). The question goes first unless the
tokenizer pads on the left (XLNet-style models put the context first).

Unlike ``run_qa`` nothing is padded here: batches are padded to their own longest window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nlptasks import ConfigError, DataError

NO_OFFSET = -1
"""``offset_start`` / ``offset_end`` of a token outside the context."""


@dataclass(frozen=True)
class WindowSettings:
    max_length: int
    doc_stride: int
    max_question_length: int


@dataclass
class Windows:
    """Features of a batch of examples; every list has one entry per window."""

    columns: dict[str, list[Any]]
    truncated_questions: int = 0
    """Questions cut to ``max_question_length`` tokens in this batch."""


def check_fits(tokenizer: Any, settings: WindowSettings, where: str) -> None:
    """A window must hold the longest question, the special tokens and more than
    ``doc_stride`` context tokens, or the tokenizer cannot slide over the context."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    room = settings.max_length - settings.max_question_length - specials
    if room <= settings.doc_stride:
        raise ConfigError(
            where,
            [
                f"a window of {settings.max_length} tokens (options.max_length, capped by the "
                f"model) minus a question of up to {settings.max_question_length} "
                f"(options.max_question_length) and {specials} special tokens leaves {room} "
                f"context tokens, not more than options.doc_stride={settings.doc_stride}. Set "
                f"options.doc_stride={max(room // 2, 1)} (at most {room - 1}), or a smaller "
                f"options.max_question_length"
            ],
        )


def make_windows(
    tokenizer: Any,
    questions: Sequence[str],
    contexts: Sequence[str],
    settings: WindowSettings,
    answers: Sequence[dict[str, list[Any]]] | None = None,
    example_indices: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
) -> Windows:
    """The windows of a batch of examples (``example_indices`` name their rows; default 0..n).

    With ``answers`` each window gets ``start_positions`` / ``end_positions`` (the first
    answer's tokens, or the CLS token when the window does not hold it whole). A question
    longer than a whole window is a DataError naming it (``names``: question ids, or
    ``Input N``); shorter ones are cut to ``max_question_length`` tokens and counted.
    """
    indices = list(example_indices) if example_indices is not None else list(range(len(contexts)))
    labels = list(names) if names is not None else [f"Input {i + 1}" for i in range(len(contexts))]
    cut_questions, truncated = _cut_questions(tokenizer, questions, settings, labels)
    question_first = tokenizer.padding_side == "right"
    encoded = tokenizer(
        cut_questions if question_first else list(contexts),
        list(contexts) if question_first else cut_questions,
        truncation="only_second" if question_first else "only_first",
        max_length=settings.max_length,
        stride=settings.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    context_sequence = 1 if question_first else 0
    sample_of = encoded.pop("overflow_to_sample_mapping")
    all_offsets = encoded.pop("offset_mapping")
    columns: dict[str, list[Any]] = {k: list(v) for k, v in encoded.items()}
    starts: list[list[int]] = []
    ends: list[list[int]] = []
    cls_indices: list[int] = []
    start_positions: list[int] = []
    end_positions: list[int] = []
    for w, offsets in enumerate(all_offsets):
        ids = columns["input_ids"][w]
        sequence_ids = encoded.sequence_ids(w)
        in_context = [s == context_sequence for s in sequence_ids]
        starts.append([o[0] if c else NO_OFFSET for o, c in zip(offsets, in_context, strict=True)])
        ends.append([o[1] if c else NO_OFFSET for o, c in zip(offsets, in_context, strict=True)])
        cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
        cls_indices.append(cls)
        if answers is not None:
            start, end = _answer_tokens(answers[sample_of[w]], starts[-1], ends[-1], cls)
            start_positions.append(start)
            end_positions.append(end)
    columns["offset_start"] = starts
    columns["offset_end"] = ends
    columns["cls_index"] = cls_indices
    columns["example_index"] = [indices[s] for s in sample_of]
    columns["length"] = [len(ids) for ids in columns["input_ids"]]
    if answers is not None:
        columns["start_positions"] = start_positions
        columns["end_positions"] = end_positions
    return Windows(columns, truncated)


def _cut_questions(
    tokenizer: Any, questions: Sequence[str], settings: WindowSettings, names: Sequence[str]
) -> tuple[list[str], int]:
    """Questions without leading blanks (they only take room), cut after
    ``max_question_length`` tokens (as BERT's run_squad did with max_query_length); and how
    many were cut. A question longer than a whole window is no question: a DataError."""
    limit = settings.max_question_length
    stripped = [q.lstrip() for q in questions]
    encoded = tokenizer(stripped, add_special_tokens=False, return_offsets_mapping=True)
    cut, truncated = [], 0
    for question, offsets, name in zip(stripped, encoded["offset_mapping"], names, strict=True):
        if len(offsets) > settings.max_length:
            raise DataError(
                f"{name}: the question has {len(offsets)} tokens, more than a whole window "
                f"(options.max_length={settings.max_length}). Shorten it or leave it out."
            )
        if len(offsets) > limit:
            question = question[: offsets[limit - 1][1]]
            truncated += 1
        cut.append(question)
    return cut, truncated


def _answer_tokens(
    answers: dict[str, list[Any]], starts: list[int], ends: list[int], cls: int
) -> tuple[int, int]:
    """Token positions of the first answer in one window, or (cls, cls) when the window does
    not hold it whole (or the question has no answer)."""
    if not answers["answer_start"]:
        return cls, cls
    text = answers["text"][0]
    # Blanks at the answer's edges belong to no token: they must not push it out of reach.
    start_char = answers["answer_start"][0] + len(text) - len(text.lstrip())
    end_char = answers["answer_start"][0] + len(text.rstrip())
    context_tokens = [i for i, s in enumerate(starts) if s != NO_OFFSET]
    if not context_tokens or end_char <= start_char:  # nothing the tokenizer keeps
        return cls, cls
    first, last = context_tokens[0], context_tokens[-1]
    if not (starts[first] <= start_char and ends[last] >= end_char):
        return cls, cls
    # The last token starting at or before the answer, the first ending at or after it.
    start = max(i for i in context_tokens if starts[i] <= start_char)
    end = min(i for i in context_tokens if ends[i] >= end_char)
    return start, end
