"""Text for causal language modelling -> token blocks with labels.

Three kinds of data:

- **plain text** (a txt file, a text column, a hub corpus such as wikitext): every row is
  tokenised, the rows are concatenated (with EOS after each document) and cut into blocks of
  ``block_size`` tokens. The last, shorter block is kept: no token is lost or duplicated (the
  transformers ``run_clm`` example drops the remainder of every 1,000 rows). A txt file is one
  document whose rows are its lines (line breaks kept); elsewhere each row is a document.
- **prompt / completion** records: the loss covers the completion (and its EOS) only.
- **chat** records (``messages``: ``[{role, content}, ...]``): rendered with the tokenizer's
  chat template when it has one; the loss covers the assistant turns only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import nlptasks
from nlptasks import DataError

IGNORE = -100
"""The label of a token the loss skips."""


def pack(token_rows: Iterator[list[int]], block_size: int) -> Iterator[list[int]]:
    """Consecutive blocks of ``block_size`` tokens from the concatenated rows; the last block
    holds what is left (shorter, never empty)."""
    buffer: list[int] = []
    for ids in token_rows:
        buffer.extend(ids)
        # Blocks are sliced from the front and the rest kept once per row: deleting each
        # block from the front moved the whole row every time, quadratic in a long row (a
        # line of 5 MB, 2 million tokens, took 40 s to cut into blocks of 32).
        whole = len(buffer) - len(buffer) % block_size
        for start in range(0, whole, block_size):
            yield buffer[start : start + block_size]
        if whole:
            buffer = buffer[whole:]
    if buffer:
        yield buffer


def document_tokens(
    texts: Sequence[str], tokenizer: Any, eos_id: int | None, per_row: bool
) -> Iterator[list[int]]:
    """Token ids of each row, with EOS after each document (each row, or only after the last
    row when the rows are the lines of one document)."""
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    for ids in encoded:
        if per_row and eos_id is not None:
            ids = [*ids, eos_id]
        yield ids


def completion_example(
    prompt_ids: list[int], completion_ids: list[int], max_length: int
) -> tuple[list[int], list[int]]:
    """(input ids, labels) of a prompt and its completion: the prompt's labels are ignored.
    Too long: the prompt's start is cut first (the completion is what is learned), then the
    completion's end."""
    overflow = len(prompt_ids) + len(completion_ids) - max_length
    if overflow > 0:
        cut = min(overflow, max(len(prompt_ids) - 1, 0))
        prompt_ids = prompt_ids[cut:]
        completion_ids = completion_ids[: max_length - len(prompt_ids)]
    return (
        [*prompt_ids, *completion_ids],
        [IGNORE] * len(prompt_ids) + list(completion_ids),
    )


def check_messages(messages: Any, where: str) -> list[dict[str, str]]:
    """A chat record's messages, checked: a list of {role, content} with an assistant turn."""
    if not isinstance(messages, list) or not messages:
        raise DataError(
            f"{where} has no messages. Give a list of {{'role': ..., 'content': ...}} objects."
        )
    checked = []
    for message in messages:
        if (
            not isinstance(message, Mapping)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise DataError(
                f"{where} has a message that is not {{'role': str, 'content': str}}: "
                f"{str(message)[:60]}. Fix the record."
            )
        checked.append({"role": message["role"], "content": message["content"]})
    if not any(m["role"] == "assistant" for m in checked):
        raise DataError(
            f"{where} has no assistant turn, so there is nothing to learn from it. Add the "
            f"assistant's reply, or drop the record."
        )
    if checked[0]["role"] == "assistant":
        raise DataError(
            f"{where} starts with an assistant turn; a conversation starts with a system or "
            f"user turn. Add the turn that the reply answers."
        )
    return checked


def render_chat(tokenizer: Any, messages: list[dict[str, str]], prompt: bool = False) -> str:
    """The conversation as text: ``nlptasks.render_chat`` (the tokenizer's chat template,
    else ``role: content`` lines), the core's, so ``nlptasks serve`` renders chats for a
    model as it was trained on them. ``prompt`` adds the start of an assistant turn."""
    return str(nlptasks.render_chat(tokenizer, messages, prompt))


def chat_example(
    tokenizer: Any, messages: list[dict[str, str]], max_length: int, where: str
) -> tuple[list[int], list[int]]:
    """(input ids, labels) of a conversation; only the assistant turns are learned.

    Each assistant turn's characters are found by rendering the conversation up to it: the
    text before it (with the assistant prompt) and the text with it. Tokens that start inside
    those characters get labels; every other token is ignored. A conversation longer than
    ``max_length`` loses its first tokens (the replies are what is learned).
    """
    full = render_chat(tokenizer, messages)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render_chat(tokenizer, messages[:i], prompt=True)
        upto = render_chat(tokenizer, messages[: i + 1])
        if not full.startswith(upto) or not upto.startswith(before):
            raise DataError(
                f"{where}: the chat template renders a conversation differently from its "
                f"beginning, so the assistant turns cannot be found. Use a template that "
                f"renders turns in order."
            )
        spans.append((len(before), len(upto)))
    encoded = tokenizer(
        full,
        add_special_tokens=False,
        return_offsets_mapping=True,
        truncation=True,
        max_length=max_length,
    )
    labels = [
        token if any(start <= s < end for start, end in spans) else IGNORE
        for token, (s, _) in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
    ]
    return list(encoded["input_ids"]), labels
