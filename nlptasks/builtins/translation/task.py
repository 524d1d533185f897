"""Translation: seq2seq models (Marian, T5, BART, mBART/NLLB/M2M) and decoder-only models
prompted to translate (Gemma 3, SmolLM2), scored by sacreBLEU BLEU and chrF on generated text.

One task, two model kinds; ``build_model`` picks the ``Translator`` of the model it loads:

- :class:`Seq2SeqTranslator` (``config.is_encoder_decoder``): the source (with T5's task
  prefix) is the encoder input, the target the labels; multilingual tokenizers get their
  language codes (``src_lang`` / ``tgt_lang``) and generation forces the target language's
  code first.
- :class:`PromptedTranslator` (decoder-only): the source goes into a prompt (the tokenizer's
  chat template when it has one, else a plain or completion prompt), the target follows it,
  and only the target (and its EOS) is learned. Generated text is cut at its first line
  break (one line in, one line out), and generation stops there.

Generation-based evaluation runs through the core's evaluation path; its ``max_new_tokens``
comes from the eval data (the longest reference, with room to spare), never from
transformers' 20-token default (transformers #10032), unless the recipe's
``generation.max_new_tokens`` says otherwise.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import datasets
import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
)

from nlptasks import (
    DataError,
    EvalContext,
    GenerationConfig,
    MetricSpec,
    Recipe,
    Scores,
    Step,
    TaskInfo,
    generation_kwargs,
    load_pretrained,
    pad_features,
    position_limit,
    predict_batches,
    sampling_seed,
    seeded,
)
from nlptasks.builtins.generation.data import IGNORE, render_chat
from nlptasks.builtins.generation.task import next_token_losses, token_losses
from nlptasks.builtins.translation.data import drop_empty, read_own_source, to_pairs
from nlptasks.builtins.translation.languages import (
    language_code,
    language_name,
    language_token_id,
    prompt_problems,
    refuse_language_codes,
)
from nlptasks.builtins.translation.metrics import (
    scores_from_statistics,
    sentence_statistics,
    signatures,
)


@dataclass
class TranslationOptions:
    """The translation task's settings (the recipe's ``options:`` section)."""

    source_lang: str | None = None
    """Language of the source text (``en``): a key of the ``translation`` dicts or a column."""
    target_lang: str | None = None
    source_path: str | None = None
    """Training source file, one sentence per line, aligned with ``target_path`` (wins over
    ``data.train_path`` / ``data.dataset``)."""
    target_path: str | None = None
    eval_source_path: str | None = None
    """Evaluation source file, aligned with ``eval_target_path`` (wins over
    ``data.eval_path``)."""
    eval_target_path: str | None = None
    source_column: str | None = None
    """Flat data: the source column (default: ``translation`` dicts, a column named by the
    language, or ``source``)."""
    target_column: str | None = None
    source_prefix: str | None = None
    """Text put before every source (T5: ``translate English to Romanian: ``); when absent,
    T5 models get that prefix and other models none."""
    source_lang_code: str | None = None
    """mBART / NLLB / M2M language code of the source (``en_XX``, ``eng_Latn``); when absent,
    ``source_lang``."""
    target_lang_code: str | None = None
    max_source_length: int = 256
    """Longer sources are cut to this many tokens (counted, with a warning)."""
    max_target_length: int = 256
    """Longer targets are cut to this many tokens (counted); also the most tokens predict
    generates unless ``generation.max_new_tokens`` says otherwise."""
    empty_pairs: Literal["skip", "error"] = "skip"
    """A pair with an empty side: skip it (counted, with a warning) or stop with an error."""
    prompt: str = "Translate from {source} to {target}:\n{text}"
    """Decoder-only models: the request, with ``{source}`` / ``{target}`` (language names)
    and ``{text}``; the translation follows it (on a new line, or as the chat reply)."""
    chat_template: bool | None = None
    """Decoder-only models: wrap the prompt in the tokenizer's chat template (default: when
    the tokenizer has one)."""
    prompt_separator: str = "\n"
    """Decoder-only models without a chat template: what joins the prompt and the
    translation. A line break (the default), or a space after a completion prompt such as
    ``"English: {text}\nFrench:"`` (what a base model continues best); a space is tokenized
    with the translation's first word, as in running text."""

    def problems(self) -> list[str]:
        found = []
        for key in ("source_lang", "target_lang"):
            if not getattr(self, key):
                found.append(
                    f"'options.{key}' is not set: name the {key.split('_')[0]} language "
                    f"(e.g. options.{key}={'en' if key == 'source_lang' else 'fr'})"
                )
        if self.source_lang and self.source_lang == self.target_lang:
            found.append("'options.source_lang' and 'options.target_lang' are the same")
        for first, second in (
            ("source_path", "target_path"),
            ("eval_source_path", "eval_target_path"),
        ):
            if bool(getattr(self, first)) != bool(getattr(self, second)):
                found.append(f"'options.{first}' and 'options.{second}' go together: set both")
        for key in ("max_source_length", "max_target_length"):
            if getattr(self, key) < 1:
                found.append(f"'options.{key}' must be at least 1, not {getattr(self, key)}")
        if self.prompt_separator not in ("\n", " "):
            found.append(
                '\'options.prompt_separator\' must be a line break or a space ("\\n" or " "), '
                f"not {self.prompt_separator!r}"
            )
        if "{text}" not in self.prompt:
            found.append("'options.prompt' must hold {text} (where the source goes)")
        found.extend(prompt_problems(self.prompt))
        return found


class TranslationTask:
    """Fine-tunes and evaluates translation models; BLEU and chrF from sacreBLEU. What
    depends on the model's kind (features, loss, generation) is its ``translator``'s."""

    info: ClassVar[TaskInfo] = TaskInfo(
        name="translation",
        pipeline_tag="translation",
        # A seq2seq model, or a decoder-only one prompted to translate.
        model_classes=("AutoModelForSeq2SeqLM", "AutoModelForCausalLM"),
        metrics=(
            MetricSpec(
                "bleu",
                greater_is_better=True,
                low=0.0,
                high=100.0,
                needs_generation=True,
                description="sacreBLEU corpus BLEU (13a, mixed case) of generated translations",
            ),
            MetricSpec(
                "chrf",
                greater_is_better=True,
                low=0.0,
                high=100.0,
                needs_generation=True,
                description="sacreBLEU chrF of generated translations",
            ),
        ),
        input_fields=("text",),
        options=TranslationOptions,
        default_recipe="gemma3-270m",
    )

    def __init__(self) -> None:
        self._translator: Translator | None = None

    @property
    def translator(self) -> Translator:
        """The model kind's half of the task, chosen by ``build_model``."""
        if self._translator is None:
            raise RuntimeError("TranslationTask: call build_model first (it picks the kind).")
        return self._translator

    # ------------------------------------------------------------------------------- data
    def read_source(
        self, recipe: Recipe, source: str, load: Callable[[], datasets.Dataset | None]
    ) -> datasets.Dataset | None:
        """The line-aligned files the options name, or a two-column tsv; else the core's."""
        data = recipe.data
        own = read_own_source(recipe.options, data.train_path, data.eval_path, source)
        return own if own is not None else load()

    def prepare_data(
        self, splits: datasets.DatasetDict, recipe: Recipe, trained_model: Any = None
    ) -> datasets.DatasetDict:
        options: TranslationOptions = recipe.options
        assert options.source_lang and options.target_lang  # options.problems() checks
        prepared = {}
        for name, split in splits.items():
            columns = (options.source_column, options.target_column)
            pairs = to_pairs(split, options.source_lang, options.target_lang, columns, name)
            keep = ["source", "target", *(["line"] if "line" in pairs.column_names else [])]
            prepared[name] = drop_empty(pairs.select_columns(keep), options.empty_pairs, name)
            if len(prepared[name]) == 0:
                raise DataError(f"The {name} data has no pair with text on both sides.")
        return datasets.DatasetDict(prepared)

    # ------------------------------------------------------------------------------ model
    def build_model(
        self, model_path: str, recipe: Recipe, trained: bool = False
    ) -> tuple[torch.nn.Module, Any]:
        """The model (a base or a trained one: translation adds no head) and its tokenizer;
        its config says which translator serves it."""
        name = self.info.name
        config = load_pretrained(_config_source(model_path), AutoConfig.from_pretrained, name)
        kind = Seq2SeqTranslator if config.is_encoder_decoder else PromptedTranslator
        tokenizer = load_pretrained(model_path, AutoTokenizer.from_pretrained, name)
        model = load_pretrained(model_path, kind.auto_class.from_pretrained, name)
        if tokenizer.pad_token_id is None:
            # Padding is masked out of attention and loss: any id will do; EOS is usual.
            tokenizer.pad_token = tokenizer.eos_token
        limit = position_limit(model, tokenizer)
        self._translator = kind(tokenizer, recipe.options, limit, str(config.model_type))
        return model, tokenizer

    # ------------------------------------------------------------------------ features
    def preprocess(
        self, dataset: datasets.Dataset, tokenizer: Any, recipe: Recipe
    ) -> datasets.Dataset:
        """One feature per pair; each carries ``max_new_tokens``, what generation needs for
        this split: its longest target with a fifth to spare (a translation may run longer)."""
        translator, options = self.translator, self.translator.options
        sources, cut = translator.source_ids(tokenizer, list(dataset["source"]))
        targets = translator.target_ids(tokenizer, list(dataset["target"]))
        long_targets = sum(len(ids) > options.max_target_length for ids in targets)
        targets = [_cut(ids, options.max_target_length, translator.eos_token_id) for ids in targets]
        _warn_cut(cut, len(sources), "sources", "options.max_source_length")
        _warn_cut(long_targets, len(targets), "targets", "options.max_target_length")
        lines = dataset["line"] if "line" in dataset.column_names else None
        features = [
            translator.feature(source, target, f"line {lines[i]}" if lines else f"row {i + 1}")
            for i, (source, target) in enumerate(zip(sources, targets, strict=True))
        ]
        longest = max((len(ids) for ids in targets), default=1)
        budget = min(options.max_target_length, math.ceil(longest * 1.2) + 5)
        columns = {key: [f[key] for f in features] for key in features[0]} if features else {}
        return datasets.Dataset.from_dict({**columns, "max_new_tokens": [budget] * len(features)})

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Padded on the right, but prompts (decoder-only generation continues them) on the
        left."""
        pad = self.translator.pad_token_id
        return pad_features(
            features, {"input_ids": pad, "prompt_ids": pad}, left=("prompt_ids", "prompt_mask")
        )

    # --------------------------------------------------------------------------- step
    def forward(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> Step:
        """Each pair's summed target-token loss and its number of target tokens."""
        losses, labels = self.translator.token_losses(model, batch)
        return Step(loss=losses.sum(dim=1), count=(labels != IGNORE).sum(dim=1))

    def generate_step(
        self, model: torch.nn.Module, batch: Mapping[str, Any], settings: GenerationConfig
    ) -> dict[str, torch.Tensor]:
        budget = int(batch["max_new_tokens"].max())  # the same for every feature of a split
        return {"generated": self._generate(model, batch, settings, budget)}

    def _generate(
        self, model: Any, batch: Mapping[str, Any], settings: GenerationConfig, budget: int
    ) -> torch.Tensor:
        translator = self.translator
        kwargs = generation_kwargs(
            settings, translator.pad_token_id, settings.max_new_tokens or budget
        )
        with sampling_seed(settings, next(model.parameters()).device):
            return translator.generate(model, batch, kwargs)

    def score(self, outputs: Mapping[str, torch.Tensor], context: EvalContext) -> Scores:
        """Per sentence: source, translation and reference, and sacreBLEU's statistics (their
        sums give corpus BLEU and chrF); none for an evaluation that did not translate."""
        if not context.generated:
            return Scores([], [])
        decode, tokenizer = self.translator.decode, context.tokenizer
        hypotheses = [decode(tokenizer, ids) for ids in outputs["generated"].tolist()]
        sources, references = context.examples["source"], context.examples["target"]
        records = [
            {"source": src, "prediction": hyp, "reference": ref}
            for src, hyp, ref in zip(sources, hypotheses, references, strict=True)
        ]
        return Scores(records, sentence_statistics(hypotheses, references), signatures())

    def aggregate(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Corpus BLEU and chrF from summed sentence statistics (sacreBLEU's own formulas)."""
        return scores_from_statistics(sums)

    # ------------------------------------------------------------------------- predict
    def predict(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
        write: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Each text's translation, in input order. ``write`` is not used: a translation is
        printed whole, as JSON with its source (batches finish out of input order)."""
        translator, settings = self.translator, recipe.generation
        texts = [str(r["text"]) for r in records]
        sources, cut = translator.source_ids(tokenizer, texts)
        _warn_cut(cut, len(sources), "inputs", "options.max_source_length")
        translator.check_room(sources)
        features = [translator.feature(ids, [], f"input {i}") for i, ids in enumerate(sources, 1)]
        # Seeded sampling: each text samples alone from the seed (same text, same output).
        size = 1 if seeded(settings) else recipe.train.eval_batch_size
        device = next(model.parameters()).device
        budget = translator.options.max_target_length
        results = [""] * len(texts)
        for indices, batch in predict_batches(features, self.collate, size, device):
            generated = self._generate(model, batch, settings, budget)
            for i, ids in zip(indices, generated.tolist(), strict=True):
                results[i] = translator.decode(tokenizer, ids)
        return [{"text": t, "translation": out} for t, out in zip(texts, results, strict=True)]

    def explain(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
        predictions: Sequence[Mapping[str, Any]],
    ) -> list[dict[str, Any]]:
        """Each target token's log-probability, and IG of the translation's
        log-probability to the source tokens (``Explains``)."""
        from nlptasks.builtins.translation.explain import explain_translations

        texts = [str(r["text"]) for r in records]
        return explain_translations(model, tokenizer, self.translator, texts, predictions)

    def model_card(self) -> dict[str, Any]:
        options = self.translator.options
        languages = f"{options.source_lang} -> {options.target_lang}"
        return {"languages": languages, **self.translator.card()}


class Translator:
    """What depends on the kind of model: its inputs, loss and generation. Made for one
    loaded model, tokenizer and options; a setting the model cannot honour is a DataError
    that says which value to use."""

    auto_class: ClassVar[Any]
    kind: ClassVar[str]

    def __init__(
        self,
        tokenizer: Any,
        options: TranslationOptions,
        context_length: int | None,
        model_type: str = "",
    ) -> None:
        self.options = options
        self.context_length = context_length
        self.pad_token_id: int = tokenizer.pad_token_id or 0
        self.eos_token_id: int | None = tokenizer.eos_token_id
        self.prefix = options.source_prefix or ""
        self.configure(tokenizer, model_type)
        if options.chat_template and not getattr(tokenizer, "chat_template", None):
            raise DataError(
                "options.chat_template is true but this model's tokenizer has no chat "
                "template. Set options.chat_template=false (a plain prompt)."
            )

    def configure(self, tokenizer: Any, model_type: str) -> None:
        """The kind's own settings, checked against the model and its tokenizer."""
        raise NotImplementedError

    def source_ids(self, tokenizer: Any, texts: Sequence[str]) -> tuple[list[list[int]], int]:
        """The model inputs of ``texts`` and how many were cut to ``max_source_length``."""
        raise NotImplementedError

    def target_ids(self, tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
        """The token ids of the targets, as the model learns them (before cutting)."""
        raise NotImplementedError

    def feature(self, source: list[int], target: list[int], where: str) -> dict[str, Any]:
        """One feature (``target`` empty when predicting); ``where`` names the pair."""
        raise NotImplementedError

    def check_room(self, sources: Sequence[list[int]]) -> None:
        """Before predicting: refuse inputs that leave no room for a translation."""

    def token_losses(
        self, model: torch.nn.Module, batch: Mapping[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(each target position's loss, the labels aligned with them), (batch, length)."""
        raise NotImplementedError

    def generate(
        self, model: Any, batch: Mapping[str, Any], kwargs: dict[str, Any]
    ) -> torch.Tensor:
        """The generated token ids, (batch, new tokens)."""
        raise NotImplementedError

    def decode(self, tokenizer: Any, ids: Sequence[int]) -> str:
        """Generated ids (padded with negative ids) as a translation."""
        return str(tokenizer.decode([i for i in ids if i >= 0], skip_special_tokens=True)).strip()

    def card(self) -> dict[str, Any]:
        """Model card facts of this kind."""
        facts = {"model kind": self.kind}
        if self.prefix:
            facts["source prefix"] = json.dumps(self.prefix)
        return facts


class Seq2SeqTranslator(Translator):
    """Encoder-decoder models: source in, target as labels."""

    auto_class = AutoModelForSeq2SeqLM
    kind = "encoder-decoder"

    def configure(self, tokenizer: Any, model_type: str) -> None:
        options, limit = self.options, self.context_length
        for key in ("max_source_length", "max_target_length"):
            if limit is not None and getattr(options, key) > limit:
                raise DataError(
                    f"options.{key} is {getattr(options, key)}, more than this model accepts "
                    f"({limit} tokens). Set options.{key}={limit} or less."
                )
        self.forced_bos_token_id: int | None = None
        if hasattr(tokenizer, "src_lang"):  # mBART, NLLB, M2M100
            tokenizer.src_lang = language_code(tokenizer, options, "source")
            target = language_code(tokenizer, options, "target")
            if hasattr(tokenizer, "tgt_lang"):
                tokenizer.tgt_lang = target
            self.forced_bos_token_id = language_token_id(tokenizer, target)
        else:
            refuse_language_codes(options)
        if options.source_prefix is None and model_type == "t5":
            source, target = language_name(options.source_lang), language_name(options.target_lang)
            self.prefix = f"translate {source} to {target}: "

    def source_ids(self, tokenizer: Any, texts: Sequence[str]) -> tuple[list[list[int]], int]:
        limit, prefixed = self.options.max_source_length, [self.prefix + t for t in texts]
        encoded = tokenizer(prefixed)["input_ids"]
        cut = sum(len(ids) > limit for ids in encoded)
        if cut:
            encoded = tokenizer(prefixed, truncation=True, max_length=limit)["input_ids"]
        return [list(ids) for ids in encoded], cut

    def target_ids(self, tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
        return [list(ids) for ids in tokenizer(text_target=list(texts))["input_ids"]]

    def feature(self, source: list[int], target: list[int], where: str) -> dict[str, Any]:
        return {
            "input_ids": source,
            "attention_mask": [1] * len(source),
            "labels": target,
            "length": len(source),
        }

    def token_losses(
        self, model: torch.nn.Module, batch: Mapping[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        labels = batch["labels"]
        inner: Any = getattr(model, "module", model)  # under DDP
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            decoder_input_ids=inner.prepare_decoder_input_ids_from_labels(labels=labels),
        ).logits
        return token_losses(logits, labels), labels

    def generate(
        self, model: Any, batch: Mapping[str, Any], kwargs: dict[str, Any]
    ) -> torch.Tensor:
        if self.forced_bos_token_id is not None:
            kwargs = {**kwargs, "forced_bos_token_id": self.forced_bos_token_id}
        output: torch.Tensor = model.generate(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs
        )
        return output


class PromptedTranslator(Translator):
    """Decoder-only models: a prompt asks for the translation, which follows it; only the
    target (and its EOS) is learned."""

    auto_class = AutoModelForCausalLM
    kind = "decoder-only, prompted"

    def configure(self, tokenizer: Any, model_type: str) -> None:
        # Prompt + target are checked against the context per pair (see ``feature``).
        refuse_language_codes(self.options)
        chosen = self.options.chat_template
        self.chat = bool(getattr(tokenizer, "chat_template", None)) if chosen is None else chosen
        self._tokenizer = tokenizer
        self._line_end: LineEnd | None = None
        # Spaces between prompt and translation go with the translation's first word (a
        # tokenizer sees " Au" as it would in running text); line breaks end the prompt.
        separator = self.options.prompt_separator
        self.prompt_end = "" if self.chat else separator.rstrip(" ")
        self.target_start = "" if self.chat else separator[len(self.prompt_end) :]

    def source_ids(self, tokenizer: Any, texts: Sequence[str]) -> tuple[list[list[int]], int]:
        limit = self.options.max_source_length
        plain = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        cut = 0
        prompts = []
        for text, ids in zip(texts, plain, strict=True):
            if len(ids) > limit:
                cut += 1
                text = tokenizer.decode(ids[:limit])
            prompts.append(self.prompt_ids(tokenizer, text))
        return prompts, cut

    def prompt_ids(self, tokenizer: Any, text: str) -> list[int]:
        """The token ids of the request to translate ``text``; the translation follows."""
        options = self.options
        request = options.prompt.format(
            source=language_name(options.source_lang),
            target=language_name(options.target_lang),
            text=self.prefix + text,
        )
        if self.chat:
            rendered = render_chat(tokenizer, [{"role": "user", "content": request}], prompt=True)
            return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
        ids = list(tokenizer(request + self.prompt_end)["input_ids"])  # with the BOS it expects
        if ids and self.eos_token_id is not None and ids[-1] == self.eos_token_id:
            ids = ids[:-1]  # some tokenizers end every text with EOS: not before the target
        return ids

    def target_ids(self, tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
        starts = [self.target_start + text for text in texts]
        encoded = tokenizer(text_target=starts, add_special_tokens=False)["input_ids"]
        eos = [] if self.eos_token_id is None else [self.eos_token_id]
        return [[*ids, *eos] for ids in encoded]

    def feature(self, source: list[int], target: list[int], where: str) -> dict[str, Any]:
        total = len(source) + len(target)
        if self.context_length is not None and total > self.context_length:
            options = self.options
            raise DataError(
                f"The pair at {where} has {total} tokens with its prompt, more than the model's "
                f"context ({self.context_length}). Lower options.max_source_length or "
                f"options.max_target_length (now {options.max_source_length} and "
                f"{options.max_target_length})."
            )
        return {
            "input_ids": [*source, *target],
            "attention_mask": [1] * total,
            "labels": [IGNORE] * len(source) + target,
            "prompt_ids": source,
            "prompt_mask": [1] * len(source),
            "length": total,
        }

    def check_room(self, sources: Sequence[list[int]]) -> None:
        for number, ids in enumerate(sources, 1):
            if self.context_length and len(ids) >= self.context_length:
                raise DataError(
                    f"Input {number}'s prompt has {len(ids)} tokens, leaving no room in the "
                    f"model's context ({self.context_length}) for a translation. Shorten it, "
                    f"or cut long inputs with --set options.max_source_length=N."
                )

    def token_losses(
        self, model: torch.nn.Module, batch: Mapping[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Position t predicts label t + 1: the labels shifted left, the last position none.
        shifted = F.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE)
        return next_token_losses(model, batch), shifted

    def generate(
        self, model: Any, batch: Mapping[str, Any], kwargs: dict[str, Any]
    ) -> torch.Tensor:
        prompt = batch["prompt_ids"]
        if self.context_length is not None:
            room = self.context_length - prompt.shape[1]
            kwargs = {**kwargs, "max_new_tokens": max(1, min(kwargs["max_new_tokens"], room))}
        if kwargs.get("num_beams", 1) == 1:
            # Only the first line is kept (``decode``): stop each row once it ends one. A base
            # model never says EOS, and would otherwise write up to the budget.
            if self._line_end is None:
                self._line_end = LineEnd(self._tokenizer)
            stop = StoppingCriteriaList([self._line_end.after(prompt.shape[1])])
            kwargs = {**kwargs, "stopping_criteria": stop}
        output = model.generate(input_ids=prompt, attention_mask=batch["prompt_mask"], **kwargs)
        return output[:, prompt.shape[1] :]  # the new tokens only

    def decode(self, tokenizer: Any, ids: Sequence[int]) -> str:
        """The first line of the generated text: one line in, one line out."""
        return super().decode(tokenizer, ids).split("\n", 1)[0].strip()

    def card(self) -> dict[str, Any]:
        separator = "" if self.chat else f", then {json.dumps(self.options.prompt_separator)}"
        prompt = json.dumps(self.options.prompt) + (" (chat template)" if self.chat else separator)
        return {**super().card(), "prompt": prompt}


class LineEnd:
    """Which tokens end a line of text, for a stopping criterion: a row is done when it
    generates a line break after some text (leading blank lines are stripped anyway)."""

    def __init__(self, tokenizer: Any) -> None:
        pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        self.breaks = torch.tensor([i for i, p in enumerate(pieces) if "\n" in p])
        self.blanks = torch.tensor([i for i, p in enumerate(pieces) if not p.strip()])

    def after(self, prompt_length: int) -> StoppingCriteria:
        """The criterion for prompts of ``prompt_length`` tokens (left-padded batches)."""
        return _LineDone(self, prompt_length)


class _LineDone(StoppingCriteria):
    def __init__(self, line_end: LineEnd, prompt_length: int) -> None:
        self.line_end, self.prompt_length = line_end, prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        new = input_ids[:, self.prompt_length :]
        breaks, blanks = (t.to(new.device) for t in (self.line_end.breaks, self.line_end.blanks))
        text_before = (~torch.isin(new[:, :-1], blanks)).any(dim=1)
        return torch.isin(new[:, -1], breaks) & text_before


def _config_source(model_dir: str) -> str:
    """Where a model's config lies: the folder itself, or a LoRA adapter's base model."""
    folder = Path(model_dir).expanduser()
    adapter = folder / "adapter_config.json"
    if not (folder / "config.json").is_file() and adapter.is_file():
        base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
        if base:
            return str(base)
    return model_dir


def _cut(ids: list[int], limit: int, eos: int | None) -> list[int]:
    """The first ``limit`` tokens, ending with EOS when the whole did (the model learns to
    stop)."""
    if len(ids) <= limit:
        return ids
    return [*ids[: limit - 1], eos] if eos is not None and ids[-1] == eos else ids[:limit]


def _warn_cut(count: int, total: int, what: str, key: str) -> None:
    if count:
        warnings.warn(
            f"Cut {count} of {total} {what} to {key} tokens; raise {key} to keep them whole.",
            stacklevel=2,
        )
