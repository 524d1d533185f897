"""Sharded training past one process: FSDP2 through accelerate, 2 CPU processes over gloo
(torchrun), against DDP; sharded checkpoints, exact resume after SIGKILL, consolidation,
tokenising once per node. The recipe section's checks run without processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nlptasks.errors import NlpTasksError
from nlptasks.recipes import DistributedConfig, TrainConfig
from nlptasks.testing import make_tiny_bert
from nlptasks.testing.processes import offline_env, run_nlptasks
from nlptasks.training import distributed
from tests.conftest import sst2_rows


# ------------------------------------------------------------------ the recipe section
def test_a_preset_alone_sets_its_strategy_and_a_strategy_its_preset() -> None:
    assert DistributedConfig(preset="zero3").strategy == "deepspeed"
    assert DistributedConfig(strategy="fsdp").preset == "fsdp2"
    assert DistributedConfig(strategy="deepspeed").preset == "zero2"
    assert DistributedConfig().preset is None and DistributedConfig().strategy == "ddp"
    assert DistributedConfig(strategy="fsdp", preset="zero2").problems() == [
        "'distributed.preset' 'zero2' does not go with strategy 'fsdp' (presets: fsdp2, "
        "zero2, zero3)."
    ]
    assert DistributedConfig(config_file="x.toml").problems()
    assert DistributedConfig(data_timeout_minutes=0).problems()


def test_presets_map_onto_accelerates_plugins() -> None:
    fsdp = distributed.describe(DistributedConfig(strategy="fsdp"))
    assert fsdp == {
        "strategy": "fsdp",
        "fsdp_version": 2,
        "auto_wrap_policy": "transformer_based_wrap",
        "state_dict_type": "SHARDED_STATE_DICT",
        "reshard_after_forward": True,
        "cpu_ram_efficient_loading": True,
        "cpu_offload": False,
        "activation_checkpointing": False,
    }
    plugin = distributed.fsdp_plugin(DistributedConfig(strategy="fsdp", offload=True))
    assert plugin.fsdp_version == 2 and plugin.state_dict_type.name == "SHARDED_STATE_DICT"
    zero3 = distributed.describe(DistributedConfig(preset="zero3", offload=True))
    assert zero3["zero_stage"] == 3 and zero3["offload_param_device"] == "cpu"


def test_an_accelerate_config_file_is_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "fsdp.yaml"
    good.write_text(
        "distributed_type: FSDP\nfsdp_config:\n  fsdp_version: 2\n"
        "  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP\n  fsdp_reshard_after_forward: false\n"
        "  fsdp_offload_params: true\n"
    )
    settings = distributed.describe(DistributedConfig(strategy="fsdp", config_file=str(good)))
    assert settings["reshard_after_forward"] is False and settings["cpu_offload"] is True
    assert settings["auto_wrap_policy"] == "transformer_based_wrap"
    bad = tmp_path / "bad.yaml"
    bad.write_text("fsdp_config:\n  fsdp_version: 2\n  fsdp_shard_everything: true\n")
    with pytest.raises(NlpTasksError, match="'fsdp_shard_everything' is not a setting"):
        distributed.describe(DistributedConfig(strategy="fsdp", config_file=str(bad)))
    v1 = tmp_path / "v1.yaml"
    v1.write_text("fsdp_config:\n  fsdp_version: 1\n")
    with pytest.raises(NlpTasksError, match="FSDP2"):
        distributed.describe(DistributedConfig(strategy="fsdp", config_file=str(v1)))
    with pytest.raises(NlpTasksError, match="does not exist"):
        distributed.describe(DistributedConfig(strategy="fsdp", config_file="missing.yaml"))
    ds_json = tmp_path / "ds.json"
    ds_json.write_text('{"zero_optimization": {"stage": 2}}')
    config = DistributedConfig(config_file=str(ds_json))
    assert config.strategy == "deepspeed"  # a DeepSpeed JSON says its strategy
    assert distributed.describe(config) == {"strategy": "deepspeed", "hf_ds_config": str(ds_json)}


def test_the_launcher_and_the_recipe_must_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(NlpTasksError, match="asks for fsdp but the recipe's distributed"):
        distributed.make_accelerator(TrainConfig(mixed_precision="no"), DistributedConfig())


def test_deepspeed_without_a_gpu_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun: sharding would be on
    with pytest.raises(NlpTasksError, match="deepspeed needs a GPU"):
        distributed.make_accelerator(
            TrainConfig(mixed_precision="no"), DistributedConfig(strategy="deepspeed")
        )


def test_fsdp_units_leave_the_embeddings_to_accelerate() -> None:
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

    bert = BertForSequenceClassification(
        BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2)
    )
    assert set(bert._no_split_modules) == {"BertEmbeddings", "BertLayer"}
    assert distributed.wrap_classes(bert) == ["BertLayer"]
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=8, n_layer=1, n_head=2))
    assert distributed.wrap_classes(gpt2) == ["GPT2Block"]


def test_one_process_trains_plainly_whatever_the_strategy() -> None:
    accelerator = distributed.make_accelerator(
        TrainConfig(mixed_precision="no"), DistributedConfig(strategy="fsdp")
    )
    assert not distributed.is_sharded(accelerator)


def test_settings_that_would_be_ignored_are_refused(tmp_path: Path) -> None:
    assert (
        DistributedConfig(preset="bogus")
        .problems()[0]
        .startswith("'distributed.preset' 'bogus' is unknown")
    )
    assert DistributedConfig(offload=True).problems()  # ddp has nothing to offload
    assert DistributedConfig(preset="zero3", activation_checkpointing=True).problems()
    unimplemented = tmp_path / "prefetch.yaml"
    unimplemented.write_text("fsdp_config:\n  fsdp_version: 2\n  fsdp_forward_prefetch: true\n")
    with pytest.raises(NlpTasksError, match="refuses the settings of distributed.config_file"):
        distributed.fsdp_plugin(DistributedConfig(strategy="fsdp", config_file=str(unimplemented)))
    broken = tmp_path / "broken.yaml"
    broken.write_text("fsdp_config: [unclosed\n")
    with pytest.raises(NlpTasksError, match="not readable YAML") as error:
        distributed.describe(DistributedConfig(strategy="fsdp", config_file=str(broken)))
    assert "\n" not in str(error.value)


def test_the_config_file_path_is_kept_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nlptasks.recipes import load_recipe, with_absolute_paths

    (tmp_path / "fsdp.yaml").write_text("fsdp_config:\n  fsdp_version: 2\n")
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(
        "sentiment", None, ["distributed.strategy=fsdp", "distributed.config_file=fsdp.yaml"]
    )
    assert with_absolute_paths(recipe).distributed.config_file == str(tmp_path / "fsdp.yaml")


def test_offload_without_a_gpu_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(NlpTasksError, match="offload needs a GPU"):
        distributed.make_accelerator(
            TrainConfig(mixed_precision="no"), DistributedConfig(strategy="fsdp", offload=True)
        )


# ------------------------------------------------------------------ two real processes
def _args(model: Path, files: tuple[Path, Path], *extra: str) -> list[str]:
    """test_interrupt's sentiment run (fp32: bitwise and 1e-5 comparisons), random batches."""
    from tests.test_interrupt import _args as sentiment_args

    return sentiment_args(
        model, files, "train.group_by_length=false", "train.learning_rate=1e-3", *extra
    )


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    return make_tiny_bert(tmp_path / "tiny", [t for t, _ in sst2_rows("train", 2000)], dropout=0)


def test_shards_read_back_exactly_with_or_without_the_optimizer() -> None:
    done = run_nlptasks(processes=2, module="tests.sharded_roundtrip")
    [line] = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    assert line["weights_back"] and line["states_kept"] and line["everything_back"], line
    assert len(line["files"]) == 2 and all(f.endswith(".safetensors") for f in line["files"])


@pytest.mark.slow
def test_fsdp_trains_like_ddp_and_holds_half_the_state_per_process(
    tiny_model: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    # Accumulation 2 with uneven real lengths: the sharded window arithmetic is exercised.
    common = _args(tiny_model, sst2_small, "train.max_steps=4", "train.batch_size=16",
                   "train.gradient_accumulation_steps=2", "-q")  # fmt: skip
    run_nlptasks("run", *common, "-o", str(tmp_path / "ddp"), processes=2)
    run_nlptasks(
        "run", *common, "distributed.strategy=fsdp", "-o", str(tmp_path / "fsdp"), processes=2
    )
    ddp = _weights(tmp_path / "ddp/model")
    fsdp = _weights(tmp_path / "fsdp/model")
    assert ddp.keys() == fsdp.keys()
    for name in ddp:
        torch.testing.assert_close(fsdp[name], ddp[name], rtol=1e-4, atol=1e-5)
    results = json.loads((tmp_path / "fsdp/results.json").read_text())
    plain = json.loads((tmp_path / "ddp/results.json").read_text())
    assert results["train"]["distributed"]["strategy"] == "fsdp"
    assert results["train"]["distributed"]["fsdp_version"] == 2
    assert plain["train"]["distributed"] == {"strategy": "ddp"}
    assert results["train"]["train_loss"] == pytest.approx(plain["train"]["train_loss"], rel=1e-4)
    # Each process holds its half of the weights and optimizer states (DDP: all of them).
    sharded = results["train"]["state_memory_mb_per_process"]
    replicated = plain["train"]["state_memory_mb_per_process"]
    assert len(sharded) == len(replicated) == 2
    assert max(sharded) < 0.6 * min(replicated), (sharded, replicated)
    assert len(results["train"]["peak_memory_mb_per_process"]) == 2
    # The checkpoint is sharded: one safetensors file per process, no pickle, no full model.
    last = tmp_path / "fsdp/checkpoints/last"
    shards = sorted(p.name for p in (last / "shards").iterdir())
    assert len(shards) == 2 and all(name.endswith(".safetensors") for name in shards)
    assert not (last / "model.safetensors").exists() and (last / "config.json").is_file()
    manifest = json.loads((last / "trainer_state.json").read_text())["files"]
    assert {f"shards/{name}" for name in shards} <= set(manifest)
    # The final model is a plain folder the Auto classes load.
    from transformers import AutoModelForSequenceClassification

    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "fsdp/model")
    assert torch.equal(loaded.classifier.weight, fsdp["classifier.weight"])


@pytest.mark.slow
def test_fsdp_trains_a_causal_lm_with_tied_weights_like_ddp(tmp_path: Path) -> None:
    """Token-level targets that differ per micro-batch (documents packed with their first
    token masked), accumulation 2, and GPT-2's tied embeddings and LM head."""
    from nlptasks.testing import make_tiny_gpt2

    texts = [t for t, _ in sst2_rows("train", 600)]
    model = make_tiny_gpt2(tmp_path / "lm", texts, dropout=0)
    rows = tmp_path / "docs.jsonl"
    rows.write_text("\n".join(json.dumps({"text": t}) for t in texts[:300]), encoding="utf-8")
    common = ["generation", f"model={model}", f"data.train_path={rows}",
              f"data.eval_path={rows}", "data.max_eval_examples=40", "options.block_size=48",
              "options.packing=documents", "train.batch_size=8",
              "train.gradient_accumulation_steps=2", "train.max_steps=5",
              "train.mixed_precision=no", "train.learning_rate=1e-3",
              "train.group_by_length=false", "-q"]  # fmt: skip
    run_nlptasks("run", *common, "-o", str(tmp_path / "ddp"), processes=2)
    run_nlptasks("run", *common, "distributed.strategy=fsdp", "-o", str(tmp_path / "fsdp"),
                 processes=2)  # fmt: skip
    ddp, fsdp = _weights(tmp_path / "ddp/model"), _weights(tmp_path / "fsdp/model")
    assert ddp.keys() == fsdp.keys()
    for name in ddp:
        torch.testing.assert_close(fsdp[name], ddp[name], rtol=1e-4, atol=1e-5)
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "fsdp/model")
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()


def _start(args: list[str], run_dir: Path) -> subprocess.Popen[str]:
    from tests.test_interrupt import _start as start

    return start(2, args, run_dir)


def _wait_for_checkpoint(process: subprocess.Popen[str], step: int) -> None:
    from tests.test_interrupt import _wait_for_step

    _wait_for_step(process, step, kind="checkpoint")


def _kill_tree(pid: int) -> None:
    from tests.test_interrupt import _kill_tree as kill

    kill(pid)


@pytest.mark.slow
def test_fsdp_resume_after_sigkill_is_bitwise_the_unbroken_run(
    tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    # Dropout on: the random state of each process resumes too.
    args = _args(tiny_bert, sst2_small, "train.max_steps=12", "train.batch_size=16",
                 "train.eval_every=6", "train.save_every=2", "train.log_every=1",
                 "distributed.strategy=fsdp")  # fmt: skip
    run_nlptasks("run", *args, "-o", str(tmp_path / "a"), "-q", processes=2)
    broken = tmp_path / "b"
    process = _start(args, broken)
    _wait_for_checkpoint(process, 4)
    _kill_tree(process.pid)  # at (or just after) a checkpoint step, no handler runs
    process.communicate(timeout=120)
    assert not (broken / "results.json").exists()

    # Another number of processes: one line that says what to do.
    other = run_nlptasks("resume", str(broken), check=False)
    assert other.returncode == 1, other.stderr
    assert "resume it with the same number" in other.stderr
    assert "nlptasks consolidate" in other.stderr and "Traceback" not in other.stderr

    run_nlptasks("resume", str(broken), "-q", processes=2)
    a, b = _weights(tmp_path / "a/model"), _weights(broken / "model")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name  # bitwise
    first = json.loads((tmp_path / "a/results.json").read_text())
    again = json.loads((broken / "results.json").read_text())
    assert again["metrics"] == first["metrics"]
    assert again["train"]["train_loss"] == first["train"]["train_loss"]

    # The last checkpoint merges into a plain model folder in one process, equal to the
    # unbroken run's step-12 weights (its final model is the best, maybe earlier).
    merged = tmp_path / "merged"
    run_nlptasks("consolidate", str(broken / "checkpoints/last"), str(merged))
    also = tmp_path / "merged-a"
    run_nlptasks("consolidate", str(tmp_path / "a/checkpoints/last"), str(also))
    left, right = _weights(merged), _weights(also)
    assert left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)
    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(merged)
    refused = run_nlptasks(
        "consolidate", str(tmp_path / "a/model"), str(tmp_path / "x"), check=False
    )
    assert refused.returncode == 1 and "not a sharded (FSDP) checkpoint" in refused.stderr

    # A torn shard is detected by the manifest; the resume falls back to the next whole one.
    from nlptasks.training import checkpoints

    shard = next((broken / "checkpoints/last/shards").iterdir())
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.warns(UserWarning, match="missing or truncated"):
        path, _ = checkpoints.find_resumable(broken / "checkpoints")
    assert path.name != "last"


@pytest.mark.slow
def test_a_lost_process_stops_every_process_with_the_resume_command(
    tiny_bert: Path, sst2_small: tuple[Path, Path], tmp_path: Path
) -> None:
    args = _args(tiny_bert, sst2_small, "train.max_steps=400", "train.batch_size=16",
                 "train.save_every=2", "distributed.strategy=fsdp")  # fmt: skip
    process = _start(args, tmp_path / "run")
    _wait_for_checkpoint(process, 2)
    # Kill one worker (what a dead node does to the others): its peers must stop too.
    workers = _children_running_nlptasks(process.pid)
    assert len(workers) == 2, workers
    os.kill(max(workers), signal.SIGKILL)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode != 0
    assert "lost the others" in stderr and "nlptasks.cli resume" in stderr, stderr[-3000:]
    from nlptasks.training import checkpoints

    path, state = checkpoints.find_resumable(tmp_path / "run/checkpoints")
    assert state["step"] >= 2 and (path / "shards").is_dir()


def _children_running_nlptasks(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid and b"nlptasks.cli" in command:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_only_the_main_process_of_a_node_tokenises(
    sst2_small: tuple[Path, Path], tiny_bert: Path, tmp_path: Path
) -> None:
    train, dev = sst2_small
    env = offline_env({"HF_DATASETS_CACHE": str(tmp_path / "cache")})
    done = run_nlptasks(
        f"model={tiny_bert}",
        f"data.train_path={train}",
        f"data.eval_path={dev}",
        processes=2,
        module="tests.count_tokenizer_calls",
        env=env,
    )
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    by_rank = {line["rank"]: line for line in lines}
    assert sorted(by_rank) == [0, 1], done.stdout
    assert by_rank[0]["calls"] > 0  # the main process tokenised
    assert by_rank[1]["calls"] == 0  # the other loaded its features
    assert by_rank[0]["features"] == by_rank[1]["features"] == {"train": 400, "eval": 200}
    assert by_rank[0]["first"] == by_rank[1]["first"]
    assert list((tmp_path / "cache/nlptasks-features").iterdir())
