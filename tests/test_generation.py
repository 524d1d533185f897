"""The generation task: packing, completion and chat masks, perplexity, LoRA, decoding, and
run / eval / predict end to end with a tiny GPT-2 on real WikiText-2 text."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from nlptasks.builtins.generation.data import (
    IGNORE,
    chat_example,
    completion_example,
    pack,
)
from nlptasks.cli import cli
from nlptasks.testing import make_tiny_gpt2
from nlptasks.testing.processes import run_nlptasks
from tests.conftest import SHARED_DATA

WIKI = SHARED_DATA / "wikitext2_raw"
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def wiki_lines(name: str, limit: int) -> list[str]:
    return (WIKI / name).read_text(encoding="utf-8").splitlines(keepends=True)[:limit]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [line for line in wiki_lines("wiki.valid.raw", 3000) if line.strip()]
    return make_tiny_gpt2(tmp_path_factory.mktemp("tiny-lm"), texts, dropout=0)


@pytest.fixture(scope="module")
def tokenizer(tiny_lm: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_lm)


@pytest.fixture
def wiki_small(tmp_path: Path) -> tuple[Path, Path]:
    train, dev = tmp_path / "train.raw", tmp_path / "dev.raw"
    train.write_text("".join(wiki_lines("wiki.valid.raw", 120)), encoding="utf-8")
    dev.write_text("".join(wiki_lines("wiki.test.raw", 40)), encoding="utf-8")
    return train, dev


# ----------------------------------------------------------------------------- packing
def test_packing_loses_and_duplicates_no_token() -> None:
    rows = [[1, 2, 3], [], [4, 5, 6, 7, 8], [9], [10, 11, 12, 13, 14, 15, 16]]
    blocks = list(pack(iter(rows), 4))
    assert [len(b) for b in blocks] == [4, 4, 4, 4]
    assert [t for b in blocks for t in b] == list(range(1, 17))
    blocks = list(pack(iter(rows), 5))
    assert [len(b) for b in blocks] == [5, 5, 5, 1]  # the remainder is kept, not dropped
    assert [t for b in blocks for t in b] == list(range(1, 17))


def _features(tiny_lm: Path, overrides: list[str]):
    from nlptasks import data
    from nlptasks.recipes import load_recipe
    from nlptasks.runner import load_task

    recipe = load_recipe("generation", "smollm2", [f"model={tiny_lm}", *overrides])
    task = load_task("generation")
    splits = task.prepare_data(data.load_splits(recipe.data), recipe)
    model, tokenizer = task.build_model(str(tiny_lm), recipe)
    return (
        task,
        model,
        tokenizer,
        {n: task.preprocess(s, tokenizer, recipe) for n, s in splits.items()},
    )


def test_a_text_file_is_packed_whole_with_eos_only_at_its_end(tiny_lm, wiki_small) -> None:
    train, dev = wiki_small
    task, _, tokenizer, features = _features(
        tiny_lm,
        [
            f"data.train_path={train}",
            f"data.eval_path={dev}",
            "~data.max_train_examples",
            "options.block_size=64",
        ],
    )
    blocks = features["train"]["input_ids"]
    assert all(len(b) == 64 for b in blocks[:-1]) and 0 < len(blocks[-1]) <= 64
    # Every line, tokenised on its own, line breaks included, then one EOS: nothing else.
    lines = train.read_text(encoding="utf-8").splitlines(keepends=True)
    expected = [t for line in lines for t in tokenizer(line)["input_ids"]]
    expected.append(tokenizer.eos_token_id)
    assert [t for b in blocks for t in b] == expected
    assert features["train"]["labels"] == blocks  # every token is a target
    assert "\n" in tokenizer.decode(blocks[0])


def test_rows_of_a_table_are_documents_with_eos_between_them(tiny_lm, tmp_path) -> None:
    rows = [{"text": f"document number {i} ends here ."} for i in range(30)]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    task, _, tokenizer, features = _features(
        tiny_lm,
        [f"data.train_path={path}", f"data.eval_path={path}", "options.block_size=16"],
    )
    stream = [t for b in features["train"]["input_ids"] for t in b]
    eos = tokenizer.eos_token_id
    assert stream.count(eos) == 30
    expected = [t for r in rows for t in [*tokenizer(r["text"])["input_ids"], eos]]
    assert stream == expected


def _documents_in_a_block(tiny_lm, tmp_path, packing: str):
    from nlptasks.batching import pad_features
    from nlptasks.builtins.generation.task import next_token_losses

    rows = [{"text": f"document {i} says {'a b c ' * (i % 3)}and ends ."} for i in range(12)]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    task, model, tokenizer, features = _features(
        tiny_lm,
        [
            f"data.train_path={path}",
            f"data.eval_path={path}",
            "options.block_size=40",
            f"options.packing={packing}",
        ],
    )
    model.eval()
    block = features["train"][0]
    ids = block["input_ids"]
    eos = tokenizer.eos_token_id
    start = ids.index(eos) + 1  # the second document of the block
    end = ids.index(eos, start) + 1
    row = {k: v for k, v in block.items() if k != "length"}
    with torch.no_grad():
        packed = next_token_losses(model, pad_features([row]))[0]
        alone_ids = ids[start:end]
        alone = next_token_losses(
            model,
            pad_features(
                [
                    {
                        "input_ids": alone_ids,
                        "labels": alone_ids,
                        "attention_mask": [1] * len(alone_ids),
                    }
                ]
            ),
        )[0]
    # Position t predicts token t + 1: the document's own predictions, the EOS's excluded.
    return block, start, end, packed[start : end - 1], alone[: end - start - 1]


def test_document_packing_restarts_positions_and_keeps_documents_apart(tiny_lm, tmp_path) -> None:
    block, start, end, packed, alone = _documents_in_a_block(tiny_lm, tmp_path, "documents")
    assert block["position_ids"][start] == 0 and block["position_ids"][start - 1] > 0
    assert block["position_ids"][start:end] == list(range(end - start))
    # The first token of a later document is not learned from the one before it.
    assert block["labels"][start] == IGNORE and block["labels"][start + 1] != IGNORE
    # No attention across documents: the second document's losses are those it has alone.
    torch.testing.assert_close(packed, alone, rtol=1e-4, atol=1e-5)


def test_block_packing_attends_across_documents(tiny_lm, tmp_path) -> None:
    block, start, end, packed, alone = _documents_in_a_block(tiny_lm, tmp_path, "blocks")
    assert "position_ids" not in block
    assert (packed - alone).abs().max() > 1e-3  # the previous document changes them


def test_document_packing_needs_documents_and_a_model_that_keeps_them_apart(
    tiny_lm, tokenizer, wiki_small, tmp_path
) -> None:
    import transformers

    from nlptasks.errors import ConfigError, DataError

    train, dev = wiki_small
    text = [
        f"data.train_path={train}",
        f"data.eval_path={dev}",
        "options.block_size=32",
        "options.packing=documents",
    ]
    with pytest.raises(DataError, match="one document") as caught:  # a txt file
        _features(tiny_lm, text)
    assert "\n" not in str(caught.value)
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    with pytest.raises(DataError, match="records"):
        _features(
            tiny_lm,
            [
                f"data.train_path={records}",
                f"data.eval_path={records}",
                "options.block_size=32",
                "options.packing=documents",
            ],
        )
    # BLOOM takes position ids but builds its mask (ALiBi) without them: it would attend
    # across documents, so it is refused in one line.
    bloom = transformers.BloomForCausalLM(
        transformers.BloomConfig(vocab_size=len(tokenizer), hidden_size=32, n_layer=2, n_head=2)
    )
    bloom.save_pretrained(tmp_path / "bloom")
    tokenizer.save_pretrained(tmp_path / "bloom")
    with pytest.raises(ConfigError, match="does not keep packed documents apart"):
        _features(tmp_path / "bloom", [*text, "options.documents=rows"])


def test_completion_loss_covers_the_completion_only() -> None:
    ids, labels = completion_example([1, 2, 3], [7, 8, 0], max_length=10)
    assert ids == [1, 2, 3, 7, 8, 0]
    assert labels == [IGNORE, IGNORE, IGNORE, 7, 8, 0]
    ids, labels = completion_example([1, 2, 3, 4, 5], [7, 8, 0], max_length=6)
    assert ids == [3, 4, 5, 7, 8, 0]  # the prompt's start is cut, the completion kept
    assert labels[3:] == [7, 8, 0] and set(labels[:3]) == {IGNORE}


def test_chat_loss_covers_the_assistant_turns_only(tokenizer) -> None:
    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "where is the lobster ?"},
        {"role": "assistant", "content": "in the sea ."},
        {"role": "user", "content": "which sea ?"},
        {"role": "assistant", "content": "the black sea ."},
    ]
    ids, labels = chat_example(tokenizer, messages, 512, "record 1")
    learned = [t for t in labels if t != IGNORE]
    text = tokenizer.decode(learned)
    assert "in the sea ." in text and "the black sea ." in text
    assert "lobster" not in text and "which" not in text and "brief" not in text
    assert "<|im_end|>" in text  # the turn's end is learned: the model learns to stop
    assert len(ids) == len(labels)


# -------------------------------------------------------------------------- perplexity
def test_perplexity_is_exp_of_the_token_weighted_loss_whatever_the_batching(
    tiny_lm, wiki_small
) -> None:
    from nlptasks.batching import collate_for
    from nlptasks.evaluation.evaluator import Evaluator
    from nlptasks.recipes import load_recipe
    from nlptasks.training.trainer import make_accelerator

    train, dev = wiki_small
    overrides = [f"data.train_path={train}", f"data.eval_path={dev}", "options.block_size=48"]
    task, model, tokenizer, features = _features(tiny_lm, overrides)
    lengths = features["eval"]["length"]
    assert len(set(lengths)) > 1  # a short last block: batches are padded
    # By hand: every block alone, token losses summed, divided by the number of targets.
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for ids in features["eval"]["input_ids"]:
            tensor = torch.tensor([ids])
            logits = model(tensor).logits[0, :-1]
            losses = torch.nn.functional.cross_entropy(logits, tensor[0, 1:], reduction="none")
            total, count = total + float(losses.sum()), count + len(ids) - 1
    expected = math.exp(total / count)
    for batch in (1, 3, 64):
        recipe = load_recipe(
            "generation",
            "smollm2",
            [
                f"model={tiny_lm}",
                *overrides,
                f"train.eval_batch_size={batch}",
                "train.mixed_precision=no",
            ],
        )
        evaluator = Evaluator(
            task,
            tokenizer,
            recipe,
            features["eval"],
            features["eval"],
            make_accelerator(recipe.train),
            collate_for(task, tokenizer),  # the core's padding: the task has no collate
        )
        evaluation = evaluator.evaluate(model)
        metrics = evaluation.metrics
        assert metrics["perplexity"] == pytest.approx(expected, rel=1e-5)
        assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]), rel=1e-9)
        # One record per block: its own summed loss and tokens, which add up to the total.
        records = evaluation.scores.records
        assert [r["tokens"] for r in records] == [n - 1 for n in lengths]
        assert sum(r["loss"] for r in records) == pytest.approx(total, rel=1e-5)


def test_perplexity_of_no_tokens_is_nan_and_of_a_huge_loss_infinite() -> None:
    from nlptasks.builtins.generation.task import GenerationTask

    task = GenerationTask()
    assert math.isnan(task.aggregate({"loss": 0.0, "tokens": 0.0})["perplexity"])
    assert math.isnan(task.aggregate({})["perplexity"])
    assert task.aggregate({"loss": 800.0, "tokens": 1.0}) == {"perplexity": math.inf}
    assert task.aggregate({"loss": 3.0, "tokens": 2.0})["perplexity"] == pytest.approx(
        math.exp(1.5)
    )


# -------------------------------------------------------------------------------- LoRA
def test_the_merged_lora_model_gives_the_logits_of_the_adapted_one(tiny_lm, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    from nlptasks.recipes import LoraConfig
    from nlptasks.training import lora

    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    adapted = lora.add_adapters(
        model, LoraConfig(enabled=True, r=4, target_modules=["c_attn"]), "t"
    )
    torch.manual_seed(0)
    with torch.no_grad():  # peft starts B at zero (no change): give the adapters a real effect
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    trainable, total = lora.trainable_parameters(adapted)
    assert 0 < trainable < total / 10
    adapted.eval()
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.no_grad():
        before = adapted(ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()(ids).logits
    assert not torch.allclose(before, base, atol=1e-3)  # the adapters do change the model
    lora.save_merged(adapted, tmp_path / "merged", tmp_path / "adapter")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        after = plain(ids).logits
    assert torch.allclose(before, after, atol=1e-5)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()


# ------------------------------------------------------------------------- end to end
def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _run_args(tiny_lm: Path, wiki_small: tuple[Path, Path], run_dir: Path) -> list[str]:
    train, dev = wiki_small
    return [
        "run",
        "generation",
        f"model={tiny_lm}",
        f"data.train_path={train}",
        f"data.eval_path={dev}",
        "~data.max_train_examples",
        "options.block_size=64",
        "train.max_steps=8",
        "train.batch_size=4",
        "train.learning_rate=3e-3",
        "train.mixed_precision=no",
        "options.sample_prompts=[' = Homarus', ' The lobster']",
        "generation.max_new_tokens=8",
        "--quiet",
        "--output-dir",
        str(run_dir),
    ]


def test_a_tiny_lm_trains_and_saves_a_plain_transformers_model(
    tiny_lm, wiki_small, tmp_path
) -> None:
    from transformers import AutoModelForCausalLM, pipeline

    run_dir = tmp_path / "run"
    invoke(*_run_args(tiny_lm, wiki_small, run_dir))
    results = json.loads((run_dir / "results.json").read_text())
    metrics = results["metrics"]["eval"]
    assert set(metrics) == {"loss", "perplexity"}
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    # Training moved the model: held-out perplexity below a uniform guess over the vocabulary.
    assert metrics["perplexity"] < AutoModelForCausalLM.from_pretrained(tiny_lm).config.vocab_size
    samples = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [s["prompt"] for s in samples] == [" = Homarus", " The lobster"]
    assert all(isinstance(s["before"], str) and isinstance(s["after"], str) for s in samples)
    pipe = pipeline("text-generation", model=str(run_dir / "model"))
    assert pipe(" = Homarus", max_new_tokens=3, do_sample=False)[0]["generated_text"]
    evaluated = json.loads(
        invoke("eval", "generation", "--model", str(run_dir / "model"), "--json")
    )
    assert evaluated == pytest.approx(metrics, rel=1e-6)


def test_lora_runs_merge_on_save_and_can_keep_the_adapter(tiny_lm, wiki_small, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    run_dir = tmp_path / "lora"
    args = _run_args(tiny_lm, wiki_small, run_dir)
    output = (
        CliRunner()
        .invoke(
            cli,
            [*args[:-4], "lora.enabled=true", "lora.save_adapter=true", "--json", *args[-2:]],
        )
        .output
    )
    start = next(json.loads(x) for x in output.splitlines() if '"run_start"' in x)
    assert 0 < start["trainable_parameters"] < start["parameters"] / 5
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(run_dir / "model")
    assert not any("lora" in name for name, _ in model.named_parameters())
    base = AutoModelForCausalLM.from_pretrained(tiny_lm)
    changed = [
        name
        for (name, p), (_, q) in zip(model.named_parameters(), base.named_parameters(), strict=True)
        if not torch.equal(p, q)
    ]
    assert changed and all("attn.c_attn" in name for name in changed)  # only adapted layers
    saved = json.loads((run_dir / "results.json").read_text())["train"]
    assert (
        saved["lora"]["r"] == 8 and saved["trainable_parameters"] == start["trainable_parameters"]
    )
    # A checkpoint of a LoRA run holds the adapter; eval loads it (base model + adapter).
    assert (run_dir / "checkpoints" / "best" / "adapter_config.json").is_file()
    from_checkpoint = json.loads(
        invoke("eval", "generation", "--model", str(run_dir / "checkpoints" / "best"), "--json")
    )
    from_model = json.loads(
        invoke("eval", "generation", "--model", str(run_dir / "model"), "--json")
    )
    assert from_checkpoint == pytest.approx(from_model, rel=1e-4)


@pytest.fixture(scope="module")
def trained_lm(tiny_lm, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("trained-lm")
    train, dev = tmp / "train.raw", tmp / "dev.raw"
    train.write_text("".join(wiki_lines("wiki.valid.raw", 120)), encoding="utf-8")
    dev.write_text("".join(wiki_lines("wiki.test.raw", 40)), encoding="utf-8")
    invoke(*_run_args(tiny_lm, (train, dev), tmp / "run"))
    return tmp / "run" / "model"


def test_sampled_decoding_with_a_seed_is_reproducible(trained_lm: Path) -> None:
    def sample(seed: int) -> list[str]:
        output = invoke(
            "predict",
            "generation",
            "--model",
            str(trained_lm),
            " = Homarus",
            " The lobster is",
            "--set",
            "generation.do_sample=true",
            "--set",
            f"generation.seed={seed}",
            "--set",
            "generation.max_new_tokens=12",
            "--set",
            "generation.top_k=50",
        )
        return [json.loads(line)["generated_text"] for line in output.splitlines()]

    first = sample(7)
    assert len(first) == 2 and all(first)
    assert sample(7) == first
    assert sample(8) != first


def test_batched_prompts_are_left_padded(trained_lm: Path) -> None:
    import nlptasks

    prompts = [" = Homarus", " The lobster is a species of clawed lobster from the"]
    alone = [nlptasks.predict("generation", str(trained_lm), [p])[0] for p in prompts]
    together = nlptasks.predict("generation", str(trained_lm), prompts, batch_size=2)
    assert together == alone  # greedy: padding must not change what a prompt produces


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty text", "text is empty"),
        ("block size", "longer than the model's context (128 tokens)"),
        ("no assistant", "has no assistant turn"),
        ("lora target", "'lora.target_modules' names 'q_proj', which this model does not have"),
        ("tied head", "the output layer, which shares its weights with the input embeddings"),
        ("chat first", "starts with an assistant turn"),
    ],
)
def test_bad_input_is_one_line(tiny_lm, wiki_small, tmp_path, case, message) -> None:
    train, dev = wiki_small
    extra = [f"data.train_path={train}", f"data.eval_path={dev}"]
    if case == "empty text":
        empty = tmp_path / "empty.jsonl"
        empty.write_text(json.dumps({"text": ""}) + "\n" + json.dumps({"text": "  "}))
        extra = [f"data.train_path={empty}", f"data.eval_path={dev}"]
    elif case == "block size":
        extra.append("options.block_size=4096")
    elif case == "no assistant":
        chat = tmp_path / "chat.jsonl"
        chat.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}))
        extra = [f"data.train_path={chat}", f"data.eval_path={chat}"]
    elif case == "chat first":
        chat = tmp_path / "chat.jsonl"
        turns = [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "yo"}]
        chat.write_text(json.dumps({"messages": turns}))
        extra = [f"data.train_path={chat}", f"data.eval_path={chat}"]
    elif case == "tied head":
        extra += ["lora.enabled=true", "lora.target_modules=[c_attn, lm_head]"]
    else:
        extra += ["lora.enabled=true", "lora.target_modules=[q_proj]"]
    result = CliRunner().invoke(
        cli, ["run", "generation", f"model={tiny_lm}", "~data.max_train_examples", *extra]
    )
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_a_prompt_longer_than_the_context_is_one_line(trained_lm: Path) -> None:
    long_prompt = " lobster" * 200
    result = CliRunner().invoke(
        cli, ["predict", "generation", "--model", str(trained_lm), long_prompt]
    )
    assert result.exit_code == 1
    assert "more than the model's context (128 tokens)" in result.output


@pytest.mark.slow
def test_two_process_perplexity_equals_one_process(trained_lm: Path) -> None:
    command = ["eval", "generation", "--model", str(trained_lm), "--json"]
    two = run_nlptasks(*command, processes=2)
    one = run_nlptasks(*command)
    assert json.loads(two.stdout) == pytest.approx(json.loads(one.stdout), rel=1e-6)


def test_streamed_text_is_the_generated_text(trained_lm: Path) -> None:
    from nlptasks.runner import predict

    chunks: list[str] = []
    streamed = predict(
        "generation", str(trained_lm), [" = Homarus", " The lobster"], stream=chunks.append
    )
    plain = predict("generation", str(trained_lm), [" = Homarus", " The lobster"])
    assert streamed == plain
    assert "".join(chunks) == "".join(p["generated_text"] + "\n" for p in plain)
    assert len(chunks) > 2  # written piece by piece, not at the end

    # The task's predict itself, as the runner calls it, with several records.
    from nlptasks.runner import load_task, model_recipe
    from nlptasks.training import precision

    task = load_task("generation")
    recipe = model_recipe("generation", str(trained_lm), None, [])
    model, tokenizer = task.build_model(str(trained_lm), recipe, trained=True)
    model.eval()
    direct: list[str] = []
    chosen = precision.resolve(recipe.train.mixed_precision)
    records = [{"prompt": " = Homarus"}, {"prompt": " The lobster"}]
    with precision.inference(chosen, model.device):
        predicted = task.predict(model, tokenizer, records, recipe, direct.append)
    assert predicted == plain and direct == chunks  # the same pieces, in input order


def test_beam_search_writes_each_text_whole(trained_lm: Path) -> None:
    from nlptasks.runner import predict

    prompts = [" = Homarus", " The lobster"]
    overrides = ["generation.num_beams=2", "generation.max_new_tokens=6"]
    chunks: list[str] = []
    streamed = predict(
        "generation", str(trained_lm), prompts, 2, None, overrides, stream=chunks.append
    )
    assert streamed == predict("generation", str(trained_lm), prompts, 2, None, overrides)
    assert chunks == [p["generated_text"] + "\n" for p in streamed]


def test_decoding_flags_become_generation_settings(trained_lm: Path) -> None:
    def run(*flags: str) -> str:
        return invoke(
            "predict",
            "generation",
            "--model",
            str(trained_lm),
            " = Homarus",
            "--max-new-tokens",
            "10",
            *flags,
        )

    greedy = run("--greedy")
    assert run() == greedy  # the tiny recipe decodes greedily by default
    sampled = run("--temperature", "1.5", "--top-k", "0", "--seed", "3")
    assert sampled != greedy  # --temperature turned sampling on
    assert run("--temperature", "1.5", "--top-k", "0", "--seed", "3") == sampled
    assert run("--temperature", "1.5", "--top-k", "0", "--seed", "4") != sampled
    result = CliRunner().invoke(
        cli, ["predict", "generation", "--model", str(trained_lm), "x", "--greedy", "--top-k", "3"]
    )
    assert result.exit_code == 2 and "--greedy cannot be combined" in result.output


def test_a_seed_gives_each_prompt_its_text_whatever_the_batch(trained_lm: Path) -> None:
    from nlptasks.runner import predict

    prompts = [" = Homarus", " The lobster", " It is"]
    overrides = ["generation.do_sample=true", "generation.seed=5", "generation.max_new_tokens=8"]
    together = predict("generation", str(trained_lm), prompts, 3, None, overrides)
    alone = [predict("generation", str(trained_lm), [p], 1, None, overrides)[0] for p in prompts]
    assert together == alone
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    predict("generation", str(trained_lm), prompts[:1], 1, None, overrides)
    assert torch.equal(torch.rand(1), expected)  # the caller's random state is untouched
    chunks: list[str] = []
    streamed = predict(
        "generation", str(trained_lm), prompts, 3, None, overrides, stream=chunks.append
    )
    assert streamed == together


def test_token_weighted_accumulation_2x4_equals_batch_8(tiny_lm, tmp_path) -> None:
    """Completions of very different lengths: a loss averaged per micro-batch would weight a
    short completion's tokens more; the trainer divides by all the window's targets."""
    from nlptasks.recipes import load_recipe
    from nlptasks.runner import prepare_run
    from nlptasks.training.trainer import Trainer

    lines = [line.strip() for line in wiki_lines("wiki.valid.raw", 400) if len(line) > 80]
    rows = [
        {"prompt": line[:30], "completion": line[30 : 40 + 25 * (i % 5)]}
        for i, line in enumerate(lines[:8])
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))

    def one_step(accumulation: int) -> tuple[dict, float, Any]:
        recipe = load_recipe(
            "generation",
            "smollm2",
            [
                f"model={tiny_lm}",
                f"data.train_path={path}",
                f"data.eval_path={path}",
                "train.batch_size=8",
                f"train.gradient_accumulation_steps={accumulation}",
                "train.max_steps=1",
                "train.learning_rate=1e-2",
                "train.group_by_length=false",
                "train.warmup_ratio=0",
                "train.scheduler=constant",
                "train.mixed_precision=no",
                "options.block_size=128",
            ],
        )
        prepared = prepare_run(recipe)
        torch.manual_seed(0)
        trainer = Trainer(
            prepared.task,
            prepared.model,
            prepared.tokenizer,
            recipe.train,
            prepared.features["train"],
            None,
        )
        result = trainer.train()
        state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        return state, result.train_loss, prepared.features["train"]

    full, full_loss, features = one_step(1)
    targets = [sum(t != IGNORE for t in labels[1:]) for labels in features["labels"]]
    assert max(targets) > 2 * min(targets)  # the micro-batches really differ in targets
    accumulated, accumulated_loss, _ = one_step(2)
    assert accumulated_loss == pytest.approx(full_loss, rel=1e-5)
    for name, value in full.items():
        torch.testing.assert_close(accumulated[name], value, rtol=1e-4, atol=1e-4)
