"""Causal language modelling: fine-tune by maximum likelihood, score by perplexity, decode."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import datasets
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from nlptasks import (
    DataError,
    EvalContext,
    ExampleStatistics,
    GenerationConfig,
    MetricSpec,
    Recipe,
    load_pretrained,
    position_limit,
    resolve_column,
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

    name: ClassVar[str] = "generation"
    default_recipe: ClassVar[str] = "smollm2"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec(
            "perplexity",
            greater_is_better=False,
            low=1.0,
            description="exp of the token-weighted mean eval loss",
        ),
    )
    main_metric: ClassVar[str] = "perplexity"
    input_fields: ClassVar[tuple[str, ...]] = ("prompt",)
    options_class: ClassVar[type] = GenerationOptions
    pipeline_tag: ClassVar[str] = "text-generation"

    def __init__(self) -> None:
        self.format = "text"
        self.context_length: int | None = None
        self.pad_token_id = 0
        self.eos_token_id: int | None = None

    # ------------------------------------------------------------------------------- data
    def prepare_data(
        self, splits: datasets.DatasetDict, recipe: Recipe, trained_model: Any = None
    ) -> datasets.DatasetDict:
        options: GenerationOptions = recipe.options
        first = next(iter(splits.values()))
        self.format = _detect_format(first, options)
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
                for key, column in (
                    ("options.prompt_column", options.prompt_column),
                    ("options.completion_column", options.completion_column),
                ):
                    resolve_column(split, column, (), key)
                split = split.select_columns([options.prompt_column, options.completion_column])
                split = split.rename_columns(
                    {
                        k: v
                        for k, v in (
                            (options.prompt_column, "prompt"),
                            (options.completion_column, "completion"),
                        )
                        if k != v
                    }
                )
                for number, row in enumerate(split, 1):
                    if not isinstance(row["completion"], str) or not row["completion"].strip():
                        raise DataError(
                            f"Record {number} of the {name} data has an empty completion. Give "
                            f"every record its completion."
                        )
            else:
                resolve_column(split, options.messages_column, (), "options.messages_column")
                split = split.select_columns([options.messages_column])
                if options.messages_column != "messages":
                    split = split.rename_columns({options.messages_column: "messages"})
                for number, row in enumerate(split, 1):
                    check_messages(row["messages"], f"Record {number} of the {name} data")
            prepared[name] = split
        return datasets.DatasetDict(prepared)

    # ------------------------------------------------------------------------------ model
    def build_model(self, model_path: str, recipe: Recipe) -> tuple[torch.nn.Module, Any]:
        model, tokenizer = self.load_trained(model_path, train=True)
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

    def load_trained(self, model_dir: str, train: bool = False) -> tuple[torch.nn.Module, Any]:
        tokenizer = load_pretrained(model_dir, AutoTokenizer.from_pretrained, self.name)
        model = load_pretrained(model_dir, AutoModelForCausalLM.from_pretrained, self.name)
        if tokenizer.pad_token_id is None:
            # Padding is masked out of attention and loss: any id will do; EOS is usual.
            tokenizer.pad_token = tokenizer.eos_token
        self.pad_token_id = tokenizer.pad_token_id or 0
        self.eos_token_id = tokenizer.eos_token_id
        self.context_length = position_limit(model, tokenizer)
        if not train:
            model.eval()
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
        options: GenerationOptions = recipe.options
        size = self.block_size(options)
        if self.format == "text":
            per_row = options.documents == "rows" or (
                options.documents == "auto" and not _one_document(recipe)
            )
            texts = [t for t in dataset["text"] if t]
            eos = self.eos_token_id
            tokens = document_tokens(texts, tokenizer, eos, per_row)
            if not per_row and eos is not None:
                tokens = _then(tokens, [eos])  # the end of the one document
            blocks = list(pack(tokens, size))
            rows: dict[str, list[Any]] = {
                "input_ids": blocks,
                "labels": blocks,
                "length": [len(b) for b in blocks],
            }
        else:
            rows = {"input_ids": [], "labels": [], "length": []}
            for number, row in enumerate(dataset, 1):
                if self.format == "completion":
                    ids, labels = completion_example(
                        _prompt_ids(tokenizer, row["prompt"] or ""),
                        [
                            *tokenizer(row["completion"], add_special_tokens=False)["input_ids"],
                            *([self.eos_token_id] if self.eos_token_id is not None else []),
                        ],
                        size,
                    )
                else:
                    messages = check_messages(row["messages"], f"Record {number}")
                    ids, labels = chat_example(tokenizer, messages, size, f"Record {number}")
                rows["input_ids"].append(ids)
                rows["labels"].append(labels)
                rows["length"].append(len(ids))
        if not any(label != IGNORE for labels in rows["labels"] for label in labels[1:]):
            raise DataError(
                "No token of this data is left to learn from (every completion or assistant "
                "turn was cut off). Raise options.block_size or shorten the records."
            )
        # Built in memory (packing needs the whole stream): not cached between runs.
        return datasets.Dataset.from_dict(rows)

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)

        def padded(key: str, value: int) -> torch.Tensor:
            return torch.tensor([f[key] + [value] * (longest - len(f[key])) for f in features])

        return {
            "input_ids": padded("input_ids", self.pad_token_id),
            "attention_mask": torch.tensor(
                [
                    [1] * len(f["input_ids"]) + [0] * (longest - len(f["input_ids"]))
                    for f in features
                ]
            ),
            "labels": padded("labels", IGNORE),
        }

    # ---------------------------------------------------------------------------- loss
    def count_targets(self, batch: Mapping[str, Any]) -> int:
        # Position t predicts token t + 1: the first label of each row is never a target.
        return int((batch["labels"][:, 1:] != IGNORE).sum())

    def compute_loss(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        return next_token_losses(model, batch).sum()

    def eval_step(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "loss": next_token_losses(model, batch).sum(dim=1),
            "loss_count": (batch["labels"][:, 1:] != IGNORE).sum(dim=1),
        }

    def new_metrics(self, context: EvalContext) -> Perplexity:
        return Perplexity()

    def metrics_from_statistics(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Perplexity: exp of the summed loss over the summed tokens."""
        tokens = sums.get("tokens", 0.0)
        if not tokens:
            return {"perplexity": math.nan}
        loss = sums.get("loss", 0.0) / tokens
        return {"perplexity": math.exp(loss) if loss < 700 else math.inf}

    # ------------------------------------------------------------------------- predict
    def predict(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
    ) -> list[dict[str, Any]]:
        options: GenerationOptions = recipe.options
        prompts = [self.prompt_text(tokenizer, str(r["prompt"]), options) for r in records]
        outputs = generate(
            model,
            tokenizer,
            prompts,
            recipe.generation,
            recipe.train.eval_batch_size,
            self.context_length,
            add_special_tokens=not options.chat,
        )
        return [
            {"prompt": str(r["prompt"]), "generated_text": text}
            for r, text in zip(records, outputs, strict=True)
        ]

    def predict_stream(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        record: Mapping[str, Any],
        recipe: Recipe,
        write: Callable[[str], None],
    ) -> dict[str, Any]:
        """Like ``predict`` for one record, writing the text as it is generated (the CLI does
        this when its output is a terminal)."""
        from transformers import TextStreamer

        class _Writer(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                write(text)

        options: GenerationOptions = recipe.options
        prompt = self.prompt_text(tokenizer, str(record["prompt"]), options)
        # Beam search keeps several candidates until the end: nothing to stream before that.
        beams = recipe.generation.num_beams > 1
        streamer = None if beams else _Writer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        text = generate(
            model,
            tokenizer,
            [prompt],
            recipe.generation,
            1,
            self.context_length,
            add_special_tokens=not options.chat,
            streamer=streamer,
        )[0]
        write(text + "\n" if beams else "\n")  # one record per line
        return {"prompt": str(record["prompt"]), "generated_text": text}

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
        outputs = generate(
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

    def model_card_info(self) -> dict[str, Any]:
        return {"data format": self.format}


class Perplexity:
    """exp(token-weighted mean eval loss): evaluation sums losses and counts over every
    process, so padding, batch sizes and process counts do not change it."""

    def add_batch(self, outputs: Mapping[str, torch.Tensor]) -> None:
        pass

    def compute(self, context: EvalContext) -> dict[str, float]:
        loss = context.loss
        if math.isnan(loss):  # no targets: undefined, not infinitely bad
            return {"perplexity": math.nan}
        # exp overflows past ~709: report infinity rather than fail.
        return {"perplexity": math.exp(loss) if loss < 700 else math.inf}

    def example_statistics(self, context: EvalContext) -> ExampleStatistics:
        """Per eval example (a packed block, or a record): its summed loss and tokens."""
        records, statistics = [], []
        for loss, tokens in context.feature_losses.tolist():
            records.append({"loss": loss, "tokens": int(tokens)})
            statistics.append({"loss": loss, "tokens": tokens})
        return ExampleStatistics(records, statistics)


def next_token_losses(model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
    """Each position's loss for predicting the next token, (batch, length); positions whose
    next label is ``IGNORE`` (and the last one) are 0."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # Shift the labels, not the logits (as transformers' loss does): slicing the
    # (batch, length, vocabulary) logits would copy them; the last position has no target.
    return token_losses(logits, F.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE))


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


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    settings: GenerationConfig,
    batch_size: int,
    context_length: int | None,
    add_special_tokens: bool = True,
    streamer: Any = None,
) -> list[str]:
    """The continuation of each prompt (without the prompt), in input order. Batches are
    left-padded, so every prompt ends where generation starts."""
    max_new = settings.max_new_tokens or DEFAULT_NEW_TOKENS
    encoded = [tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
    for number, ids in enumerate(encoded, 1):
        if context_length is not None and len(ids) + max_new > context_length:
            raise DataError(
                f"Input {number}'s prompt has {len(ids)} tokens; with max_new_tokens {max_new} "
                f"that is more than the model's context ({context_length} tokens). Shorten the "
                f"prompt or lower max_new_tokens."
            )
        if not ids:
            raise DataError(f"Input {number}'s prompt is empty. Give it text.")
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new,
        "num_beams": settings.num_beams,
        "do_sample": settings.do_sample,
        "repetition_penalty": settings.repetition_penalty,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if streamer is not None:
        kwargs["streamer"] = streamer
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
        if settings.top_k is not None:  # else the model's generation_config decides
            kwargs["top_k"] = settings.top_k
    seeded = settings.do_sample and settings.seed is not None
    if seeded:
        # Each prompt samples alone from the seed: the same prompt gives the same text
        # whatever its batch, its position or the output (terminal or JSON).
        batch_size = 1
    device = next(model.parameters()).device
    results: list[str] = [""] * len(prompts)
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        longest = max(len(ids) for ids in chunk)
        input_ids = torch.tensor([[tokenizer.pad_token_id] * (longest - len(i)) + i for i in chunk])
        mask = torch.tensor([[0] * (longest - len(i)) + [1] * len(i) for i in chunk])
        # The caller's random state is left as it was.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            if seeded:
                torch.manual_seed(int(settings.seed or 0))
            output = model.generate(
                input_ids=input_ids.to(device), attention_mask=mask.to(device), **kwargs
            )
        for offset, row in enumerate(output[:, longest:].tolist()):
            results[start + offset] = tokenizer.decode(row, skip_special_tokens=True)
    return results


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
