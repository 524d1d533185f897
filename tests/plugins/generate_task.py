"""A fixture plugin: a generate-and-score task written only against the public API.

A causal LM learns to copy the first words of an SST-2 sentence after a prompt. Its loss
covers the target only; its generation-based metrics compare generated text with string
references taken from the raw examples in the evaluation context.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import datasets
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

import nlptasks
from nlptasks import EvalContext, GenerationConfig, MetricSpec, Recipe, length_sorted_batches

TASK = "toy-generate"
SST2 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sst2"


@nlptasks.hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register(TASK, "tests.plugins.generate_task:GenerateTask", description="copy words")


@nlptasks.hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    register("toy-copy-pairs", load_pairs, description="copy the first words", tasks=(TASK,))


@nlptasks.hookimpl
def register_recipes(register: Callable[..., None]) -> None:
    register(TASK, "tiny", Path(__file__).with_name("generate-recipe.yaml"))


def load_pairs(config: Any) -> datasets.DatasetDict:
    def read(name: str, limit: int) -> datasets.Dataset:
        lines = (SST2 / f"{name}.tsv").read_text(encoding="utf-8").splitlines()[1 : limit + 1]
        words = [" ".join(line.split("\t")[0].split()[:3]) for line in lines]
        return datasets.Dataset.from_dict(
            {"prompt": [f"copy : {w} =" for w in words], "target": [f" {w}" for w in words]}
        )

    return datasets.DatasetDict({"train": read("train", 200), "validation": read("dev", 35)})


class GenerateTask:
    name: ClassVar[str] = TASK
    default_recipe: ClassVar[str] = "tiny"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("exact_match", True, low=0.0, high=1.0, needs_generation=True),
        MetricSpec("generated_chars", True, low=0.0, needs_generation=True),
    )
    main_metric: ClassVar[str] = "loss"
    input_fields: ClassVar[tuple[str, ...]] = ("prompt",)
    options_class: ClassVar[type] = nlptasks.NoOptions
    pipeline_tag: ClassVar[str] = "text-generation"

    def __init__(self) -> None:
        self.tokenizer: Any = None

    def prepare_data(
        self, splits: datasets.DatasetDict, recipe: Recipe, trained_model: Any = None
    ) -> datasets.DatasetDict:
        return splits

    def build_model(self, model_path: str, recipe: Recipe) -> tuple[torch.nn.Module, Any]:
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        return AutoModelForCausalLM.from_pretrained(model_path), self.tokenizer

    def load_trained(self, model_dir: str) -> tuple[torch.nn.Module, Any]:
        return self.build_model(model_dir, None)  # type: ignore[arg-type]

    def preprocess(
        self, dataset: datasets.Dataset, tokenizer: Any, recipe: Recipe
    ) -> datasets.Dataset:
        eos = tokenizer.eos_token_id

        def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            prompts = tokenizer(batch["prompt"])["input_ids"]
            targets = [ids + [eos] for ids in tokenizer(batch["target"])["input_ids"]]
            return {
                "input_ids": [p + t for p, t in zip(prompts, targets, strict=True)],
                # The loss covers the target only.
                "labels": [[-100] * len(p) + t for p, t in zip(prompts, targets, strict=True)],
                "prompt_ids": prompts,
                "length": [len(p) + len(t) for p, t in zip(prompts, targets, strict=True)],
            }

        return dataset.map(tokenize, batched=True, remove_columns=dataset.column_names)

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad = self.tokenizer.eos_token_id
        longest = max(len(f["input_ids"]) for f in features)
        prompt_longest = max(len(f["prompt_ids"]) for f in features)

        def right(key: str, value: int) -> list[list[int]]:
            return [f[key] + [value] * (longest - len(f[key])) for f in features]

        def left(ids: list[int], value: int) -> list[int]:
            return [value] * (prompt_longest - len(ids)) + ids  # generation continues on the right

        return {
            "input_ids": torch.tensor(right("input_ids", pad)),
            "attention_mask": torch.tensor(
                [
                    [1] * len(f["input_ids"]) + [0] * (longest - len(f["input_ids"]))
                    for f in features
                ]
            ),
            "labels": torch.tensor(right("labels", -100)),
            "prompt_ids": torch.tensor([left(f["prompt_ids"], pad) for f in features]),
            "prompt_mask": torch.tensor([left([1] * len(f["prompt_ids"]), 0) for f in features]),
        }

    def count_targets(self, batch: Mapping[str, Any]) -> int:
        return int((batch["labels"][:, 1:] != -100).sum())

    def _token_losses(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        # Position t predicts token t+1.
        return F.cross_entropy(
            logits[:, :-1].float().transpose(1, 2), batch["labels"][:, 1:], reduction="none"
        )

    def compute_loss(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        return self._token_losses(model, batch).sum()

    def eval_step(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "loss": self._token_losses(model, batch).sum(dim=1),
            "loss_count": (batch["labels"][:, 1:] != -100).sum(dim=1),
        }

    def generate_step(
        self, model: torch.nn.Module, batch: Mapping[str, Any], settings: GenerationConfig
    ) -> dict[str, torch.Tensor]:
        return {"generated": self._generate(model, batch, settings)}

    def _generate(
        self, model: Any, batch: Mapping[str, Any], settings: GenerationConfig
    ) -> torch.Tensor:
        prompt = batch["prompt_ids"]
        sampling = (
            {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
            if settings.do_sample
            else {"do_sample": False}
        )
        out = model.generate(
            input_ids=prompt,
            attention_mask=batch["prompt_mask"],
            max_new_tokens=settings.max_new_tokens or 8,
            num_beams=settings.num_beams,
            pad_token_id=self.tokenizer.eos_token_id,
            **sampling,
        )
        return out[:, prompt.shape[1] :]  # the new tokens only

    def new_metrics(self, context: EvalContext) -> CopyScore:
        return CopyScore(context)

    def predict(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        records: Sequence[Mapping[str, Any]],
        recipe: Recipe,
    ) -> list[dict[str, Any]]:
        self.tokenizer = tokenizer
        prompts = [tokenizer(str(r["prompt"]))["input_ids"] for r in records]
        results: list[dict[str, Any]] = [{} for _ in records]
        for indices in length_sorted_batches([len(p) for p in prompts], 8):
            rows = [{"input_ids": [0], "labels": [0], "prompt_ids": prompts[i]} for i in indices]
            batch = {k: v.to(model.device) for k, v in self.collate(rows).items()}
            generated = self._generate(model, batch, recipe.generation)
            for i, ids in zip(indices, generated.tolist(), strict=True):
                text = tokenizer.decode(ids, skip_special_tokens=True)
                results[i] = {"prompt": records[i]["prompt"], "completion": text}
        return results

    def model_card_info(self) -> dict[str, Any]:
        return {}


class CopyScore:
    """Exact match of generated text against the references in ``context.examples``."""

    def __init__(self, context: EvalContext) -> None:
        self.references = context.examples["target"]
        self.tokenizer = context.tokenizer
        self.matches = 0
        self.chars = 0
        self.count = 0

    def add_batch(self, outputs: Mapping[str, torch.Tensor]) -> None:
        if "generated" not in outputs:  # a loss-only evaluation
            return
        for index, row in zip(outputs["index"].tolist(), outputs["generated"], strict=True):
            ids = [t for t in row.tolist() if t >= 0]  # -100: padding between processes
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            self.matches += text.strip() == self.references[index].strip()
            self.chars += len(text)
            self.count += 1

    def compute(self, context: EvalContext) -> dict[str, float]:
        if not context.generated:
            return {}
        return {"exact_match": self.matches / max(self.count, 1), "generated_chars": self.chars}
