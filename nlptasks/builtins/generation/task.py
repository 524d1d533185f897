"""Causal language modelling: fine-tune by maximum likelihood, score by perplexity, decode."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import datasets
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from nlptasks import (
    ConfigError,
    DataError,
    EvalContext,
    GenerationConfig,
    MetricSpec,
    Recipe,
    Scores,
    Step,
    TaskInfo,
    generate_texts,
    load_pretrained,
    position_limit,
    resolve_column,
    unwrapped,
)
from nlptasks.builtins.generation.data import (
    IGNORE,
    chat_example,
    check_messages,
    completion_example,
    document_tokens,
    pack,
    render_chat,
)

TEXT_CANDIDATES = ("text", "content", "document", "sentence")
DEFAULT_BLOCK = 1024
DEFAULT_NEW_TOKENS = 50


@dataclass
class GenerationOptions:
    """The generation task's settings (the recipe's ``options:`` section)."""

    format: Literal["auto", "text", "completion", "chat"] = "auto"
    """``text``: packed plain text; ``completion``: prompt/completion records; ``chat``:
    ``messages`` records. ``auto`` picks by the columns the data has."""
    text_column: str | None = None
    """Text column; when absent the first of text/content/document/sentence that exists."""
    prompt_column: str = "prompt"
    completion_column: str = "completion"
    messages_column: str = "messages"
    block_size: int | None = None
    """Tokens per packed block (and per record); when absent min(1024, the model's context)."""
    documents: Literal["auto", "rows", "file"] = "auto"
    """Plain text: is each row a document (EOS after each) or is the data one document whose
    rows are lines? ``auto``: a txt file is one document, other data has a document per row."""
    packing: Literal["blocks", "documents"] = "blocks"
    """Plain text: ``blocks`` attends across the documents a block holds (transformers'
    run_clm); ``documents`` restarts the position ids at each document, so no token attends to
    another document's (padding-free packing, as transformers' DataCollatorWithFlattening) and
    no document's first token is predicted from the one before."""
    chat: bool = False
    """predict: wrap each prompt as a user turn of the chat template (for chat models)."""
    sample_prompts: list[str] = field(default_factory=list)
    """Prompts continued before and after fine-tuning, written to ``RUN/samples.jsonl``."""

    def problems(self) -> list[str]:
        found = []
        if self.block_size is not None and self.block_size < 2:
            found.append(f"'options.block_size' must be at least 2, not {self.block_size}")
        if any(not p.strip() for p in self.sample_prompts):
            found.append("'options.sample_prompts' must not hold an empty prompt")
        return found


class GenerationTask:
    """Fine-tunes any causal LM (GPT-2, Llama, SmolLM2, ...) by maximum likelihood."""

    info: ClassVar[TaskInfo] = TaskInfo(
        name="generation",
        pipeline_tag="text-generation",
        metrics=(
            MetricSpec(
                "perplexity",
                greater_is_better=False,
                low=1.0,
                description="exp of the token-weighted mean eval loss",
            ),
        ),
        input_fields=("prompt",),
        options=GenerationOptions,
        default_recipe="smollm2",
    )

    def __init__(self) -> None:
        self.format = "text"
        self.context_length: int | None = None
        self.eos_token_id: int | None = None

    # ------------------------------------------------------------------------------- data
    def prepare_data(
        self, splits: datasets.DatasetDict, recipe: Recipe, trained_model: Any = None
    ) -> datasets.DatasetDict:
        options: GenerationOptions = recipe.options
        self.format = _detect_format(next(iter(splits.values())), options)
        prepared = {}
        for name, split in splits.items():
            if self.format == "text":
                column = resolve_column(
                    split, options.text_column, TEXT_CANDIDATES, "options.text_column"
                )
                split = split.select_columns([column]).rename_columns(
                    {column: "text"} if column != "text" else {}
                )
                texts = split["text"]
                if not any(isinstance(t, str) and t.strip() for t in texts):
                    raise DataError(
                        f"The {name} text is empty. Point the recipe at a file with text."
                    )
                if any(t is not None and not isinstance(t, str) for t in texts[:100]):
                    raise DataError(
                        f"Column '{column}' ({name} data) does not hold text. Set "
                        f"options.text_column=COLUMN."
                    )
            elif self.format == "completion":
                columns = {"prompt": options.prompt_column, "completion": options.completion_column}
                for role, column in columns.items():
                    resolve_column(split, column, (), f"options.{role}_column")
                split = split.select_columns(list(columns.values()))
                split = split.rename_columns({c: r for r, c in columns.items() if c != r})
                for number, row in enumerate(split, 1):
                    if not isinstance(row["completion"], str) or not row["completion"].strip():
                        raise DataError(
                            f"Record {number} of the {name} data has an empty completion. Give "
                            f"every record its completion."
                        )
            else:
                resolve_column(
                    split, options.messages_column, (), "options.messages_column", nested=True
                )
                split = split.select_columns([options.messages_column])
                if options.messages_column != "messages":
                    split = split.rename_columns({options.messages_column: "messages"})
                for number, row in enumerate(split, 1):
                    check_messages(row["messages"], f"Record {number} of the {name} data")
            prepared[name] = split
        return datasets.DatasetDict(prepared)

    # ------------------------------------------------------------------------------ model
    def build_model(
        self, model_path: str, recipe: Recipe, trained: bool = False
    ) -> tuple[torch.nn.Module, Any]:
        tokenizer = load_pretrained(model_path, AutoTokenizer.from_pretrained, self.info.name)
        model = load_pretrained(model_path, AutoModelForCausalLM.from_pretrained, self.info.name)
        if tokenizer.pad_token_id is None:
            # Padding is masked out of attention and loss: any id will do; EOS is usual.
            tokenizer.pad_token = tokenizer.eos_token
        self.eos_token_id = tokenizer.eos_token_id
        self.context_length = position_limit(model, tokenizer)
        if recipe.options.packing == "documents":
            _check_keeps_documents_apart(model, recipe.name or "recipe")
        if trained:  # predict and eval may change max_new_tokens: the samples are not theirs
            return model, tokenizer
        options: GenerationOptions = recipe.options
        max_new = recipe.generation.max_new_tokens or DEFAULT_NEW_TOKENS
        for number, prompt in enumerate(options.sample_prompts, 1):
            length = len(tokenizer(self.prompt_text(tokenizer, prompt, options))["input_ids"])
            if self.context_length is not None and length + max_new > self.context_length:
                raise DataError(
                    f"options.sample_prompts {number} has {length} tokens; with "
                    f"max_new_tokens {max_new} it does not fit the model's context "
                    f"({self.context_length}). Shorten it."
                )
        return model, tokenizer

    def block_size(self, options: GenerationOptions) -> int:
        """The recipe's block size, or min(1024, context); a size beyond the model's context
        is a DataError."""
        if options.block_size is None:
            return min(DEFAULT_BLOCK, self.context_length or DEFAULT_BLOCK)
        if self.context_length is not None and options.block_size > self.context_length:
            raise DataError(
                f"options.block_size is {options.block_size}, longer than the model's context "
                f"({self.context_length} tokens). Set options.block_size={self.context_length} "
                f"or less."
            )
        return options.block_size

    # ------------------------------------------------------------------------ features
    def preprocess(
        self, dataset: datasets.Dataset, tokenizer: Any, recipe: Recipe
    ) -> datasets.Dataset:
        """Token blocks (plain text) or one row per record: input_ids, labels (IGNORE where
        nothing is learned), attention_mask (the core pads it with 0) and length."""
        options: GenerationOptions = recipe.options
        size = self.block_size(options)
        if self.format == "text":
            per_row = options.documents == "rows" or (
                options.documents == "auto" and not _one_document(recipe)
            )
            eos = self.eos_token_id
            tokens = document_tokens([t for t in dataset["text"] if t], tokenizer, eos, per_row)
            if not per_row and eos is not None:
                tokens = _then(tokens, [eos])  # the end of the one document
            examples = [(block, block) for block in pack(tokens, size)]
            if options.packing == "documents":
                if not per_row:
                    raise DataError(
                        "options.packing=documents needs a document per row, and this data "
                        "is one document (a txt file). Set options.documents=rows, or remove "
                        "options.packing."
                    )
                if eos is None:
                    raise DataError(
                        "options.packing=documents finds documents by their EOS token, and "
                        "this tokenizer has none. Use options.packing=blocks."
                    )
                return _with_document_positions(examples, eos)
        elif options.packing == "documents":
            raise DataError(
                f"options.packing=documents packs plain text; this data is {self.format} "
                f"records, one per row already. Remove the setting."
            )
        else:
            examples = [self._record(tokenizer, row, n, size) for n, row in enumerate(dataset, 1)]
        if not any(label != IGNORE for _, labels in examples for label in labels[1:]):
            raise DataError(
                "No token of this data is left to learn from (every completion or assistant "
                "turn was cut off). Raise options.block_size or shorten the records."
            )
        # Built in memory (packing needs the whole stream): not cached between runs.
        return datasets.Dataset.from_dict(
            {
                "input_ids": [ids for ids, _ in examples],
                "labels": [labels for _, labels in examples],
                "attention_mask": [[1] * len(ids) for ids, _ in examples],
                "length": [len(ids) for ids, _ in examples],
            }
        )

    def _record(
        self, tokenizer: Any, row: Mapping[str, Any], number: int, size: int
    ) -> tuple[list[int], list[int]]:
        """(input ids, labels) of a completion or chat record."""
        if self.format == "completion":
            completion = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
            eos = [self.eos_token_id] if self.eos_token_id is not None else []
            prompt = _prompt_ids(tokenizer, row["prompt"] or "")
            return completion_example(prompt, [*completion, *eos], size)
        messages = check_messages(row["messages"], f"Record {number}")
        return chat_example(tokenizer, messages, size, f"Record {number}")

    # ---------------------------------------------------------------------------- step
    def forward(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> Step:
        """Each row's summed next-token loss and its number of targets (position t predicts
        token t + 1: the first label of a row is never a target)."""
        return Step(
            loss=next_token_losses(model, batch).sum(dim=1),
            count=(batch["labels"][:, 1:] != IGNORE).sum(dim=1),
        )

    def score(self, outputs: Mapping[str, torch.Tensor], context: EvalContext) -> Scores:
        """Per eval example (a packed block, or a record): its summed loss and tokens."""
        rows = context.losses.tolist()
        return Scores(
            [{"loss": loss, "tokens": int(tokens)} for loss, tokens in rows],
            [{"loss": loss, "tokens": tokens} for loss, tokens in rows],
        )

    def aggregate(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Perplexity: exp of the summed loss over the summed tokens."""
        tokens = sums.get("tokens", 0.0)
        if not tokens:  # no targets: undefined, not infinitely bad
            return {"perplexity": math.nan}
        loss = sums.get("loss", 0.0) / tokens
        # exp overflows past ~709: report infinity rather than fail.
        return {"perplexity": math.exp(loss) if loss < 700 else math.inf}

    # ------------------------------------------------------------------------- predict
    def predict(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
        write: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Each prompt's continuation; with ``write``, each record's text is written as it is
        generated, then a line break."""
        options: GenerationOptions = recipe.options
        prompts = [self.prompt_text(tokenizer, str(r["prompt"]), options) for r in records]
        outputs = generate_texts(
            model,
            tokenizer,
            prompts,
            recipe.generation,
            recipe.train.eval_batch_size,
            self.context_length,
            add_special_tokens=not options.chat,
            write=write,
        )
        return [
            {"prompt": str(r["prompt"]), "generated_text": text}
            for r, text in zip(records, outputs, strict=True)
        ]

    def prompt_text(self, tokenizer: Any, prompt: str, options: GenerationOptions) -> str:
        if options.chat and not getattr(tokenizer, "chat_template", None):
            raise DataError(
                "options.chat is set but this model's tokenizer has no chat template, so its "
                "chat format is unknown. Drop options.chat (plain prompts)."
            )
        if options.chat:
            return render_chat(tokenizer, [{"role": "user", "content": prompt}], prompt=True)
        return prompt

    def samples(
        self, model: torch.nn.Module, tokenizer: Any, recipe: Recipe
    ) -> list[dict[str, str]]:
        """Greedy continuations of ``options.sample_prompts``: the runner writes them, from
        before and after fine-tuning, to ``RUN/samples.jsonl``."""
        options: GenerationOptions = recipe.options
        if not options.sample_prompts:
            return []
        settings = GenerationConfig(
            max_new_tokens=recipe.generation.max_new_tokens or DEFAULT_NEW_TOKENS, do_sample=False
        )
        prompts = [self.prompt_text(tokenizer, p, options) for p in options.sample_prompts]
        outputs = generate_texts(
            model,
            tokenizer,
            prompts,
            settings,
            8,
            self.context_length,
            add_special_tokens=not options.chat,
        )
        return [
            {"prompt": p, "output": o} for p, o in zip(options.sample_prompts, outputs, strict=True)
        ]

    def explain(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
        predictions: Sequence[Mapping[str, Any]],
    ) -> list[dict[str, Any]]:
        """Each generated token's log-probability, and IG of the continuation's
        log-probability to the prompt tokens (``Explains``)."""
        from nlptasks.builtins.generation.explain import explain_continuations

        options: GenerationOptions = recipe.options
        prompts = [self.prompt_text(tokenizer, str(r["prompt"]), options) for r in records]
        return explain_continuations(
            model,
            tokenizer,
            prompts,
            predictions,
            not options.chat,
            self.context_length,
            recipe.generation.max_new_tokens or DEFAULT_NEW_TOKENS,
        )

    def model_card(self) -> dict[str, Any]:
        return {"data format": self.format}


def next_token_losses(model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
    """Each position's loss for predicting the next token, (batch, length); positions whose
    next label is ``IGNORE`` (and the last one) are 0."""
    # Shift the labels, not the logits (as transformers' loss does): slicing the
    # (batch, length, vocabulary) logits would copy them; the last position has no target.
    labels = F.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if "position_ids" in batch:
        # Documents packed in a row: without a 2-D mask, transformers reads the documents
        # from the restarting position ids and masks attention between them. Right padding
        # needs no mask in a causal model (no real token attends to a later pad).
        # No cache either: transformers looks for packed documents only without one.
        inputs = {
            "input_ids": batch["input_ids"],
            "position_ids": batch["position_ids"],
            "use_cache": False,
        }
    targets = labels != IGNORE
    if _keeps_logits(model):
        # The output layer only where a label is learned (not at prompts or padding): with a
        # large vocabulary (Gemma's 262,144 tokens) the logits are most of the memory.
        logits = model(**inputs, logits_to_keep=targets).logits
        if logits.dim() == 2 and logits.shape[0] == int(targets.sum()):
            losses = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
            losses[targets] = token_losses(logits, labels[targets])
            return losses
    return token_losses(model(**inputs).logits, labels)


def _check_keeps_documents_apart(model: torch.nn.Module, source: str) -> None:
    """A one-line error unless the model masks attention between packed documents: models
    that take position ids but build their mask without them (BLOOM, MPT) would silently
    attend across documents."""
    device = next(model.parameters()).device
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]], device=device)
    positions = torch.tensor([[0, 1, 2, 0, 1, 2]], device=device)
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            was_training = model.training
            model.eval()
            packed = model(input_ids=ids, position_ids=positions, use_cache=False).logits
            alone = model(input_ids=ids[:, 3:], use_cache=False).logits
            model.train(was_training)
        apart = torch.allclose(packed[0, 3:].float(), alone[0].float(), rtol=1e-3, atol=1e-4)
    except (TypeError, ValueError, RuntimeError):
        apart = False
    if not apart:
        raise ConfigError(
            source,
            [
                f"'options.packing=documents': this model ({type(model).__name__}) does not "
                f"keep packed documents apart (its attention mask ignores position ids); use "
                f"options.packing=blocks"
            ],
        )


def _with_document_positions(
    examples: list[tuple[list[int], list[int]]], eos: int
) -> datasets.Dataset:
    """Blocks with position ids restarting after each EOS and the first token of each later
    document not learned (its context is another document)."""
    rows: dict[str, list[Any]] = {
        "input_ids": [],
        "labels": [],
        "position_ids": [],
        "attention_mask": [],
        "length": [],
    }
    for ids, _ in examples:
        positions, labels = [], list(ids)
        position = 0
        for t in range(len(ids)):
            if t and ids[t - 1] == eos:
                position = 0
                labels[t] = IGNORE
            positions.append(position)
            position += 1
        rows["input_ids"].append(ids)
        rows["labels"].append(labels)
        rows["position_ids"].append(positions)
        rows["attention_mask"].append([1] * len(ids))
        rows["length"].append(len(ids))
    return datasets.Dataset.from_dict(rows)


def _keeps_logits(model: torch.nn.Module) -> bool:
    """Whether the model (inside DDP or PEFT wrappers) computes logits only at the positions
    a ``logits_to_keep`` mask gives (transformers 5 causal LMs)."""
    inner = unwrapped(model)
    # A boolean mask is understood where the model slices with transformers' helper (5.x);
    # a model that indexes ``hidden_states[:, logits_to_keep]`` itself would fail on it.
    return _slices_with_the_helper(type(inner))  # type: ignore[arg-type]


@functools.cache
def _slices_with_the_helper(cls: Any) -> bool:
    try:
        forward = inspect.unwrap(cls.forward)
        return "logits_to_keep" in inspect.signature(forward).parameters and (
            "slice_logits_to_keep(" in inspect.getsource(forward)
        )
    except (AttributeError, OSError, TypeError, ValueError):
        return False


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each label given the logits at its position, in float32, shaped
    like ``labels``; ``IGNORE`` labels give 0."""
    losses = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="none",
    )
    return losses.view(labels.shape)


def _detect_format(split: datasets.Dataset, options: GenerationOptions) -> str:
    if options.format != "auto":
        return options.format
    columns = set(split.column_names)
    if options.messages_column in columns:
        return "chat"
    if {options.prompt_column, options.completion_column} <= columns:
        return "completion"
    return "text"


def _one_document(recipe: Recipe) -> bool:
    """A text file (.txt, WikiText's .raw) is one document: its rows are its lines."""
    paths = [p for p in (recipe.data.train_path, recipe.data.eval_path) if p]
    return bool(paths) and all(str(p).lower().endswith((".txt", ".raw")) for p in paths)


def _prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    ids = tokenizer(prompt)["input_ids"]  # with the BOS the model expects, if any
    if ids and tokenizer.eos_token_id is not None and ids[-1] == tokenizer.eos_token_id:
        ids = ids[:-1]  # some tokenizers end every text with EOS: not before a completion
    return list(ids)


def _then(tokens: Any, tail: list[int]) -> Any:
    yield from tokens
    yield tail
