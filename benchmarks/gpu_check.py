"""The scale-out check for a GPU machine: throughput, memory and MFU of DDP, FSDP2 and DeepSpeed
ZeRO-2 on a bert-base-shaped and a gpt2-shaped model, and an exact resume of a sharded (FSDP)
run killed with SIGKILL. Offline: both models are built here from their configs (random
weights) with tokenizers trained on the data; the data is ../shared/data (SST-2, WikiText-2),
or generated text where it is absent. Start it through ``gpu_check.sh``:

    bash benchmarks/gpu_check.sh                  # every GPU of this machine, under 8 minutes
    bash benchmarks/gpu_check.sh --cpu-smoke      # tiny models, 2 processes over gloo, on CPUs

Every training run is ``torchrun --standalone --nproc_per_node NGPU -m nlptasks.cli run ...``
with ``train.max_steps``, ``train.mixed_precision=bf16`` and ``distributed.strategy``; its
numbers are read back from the run's ``events.jsonl`` and ``results.json``:

- tokens/s: the median of the ``step`` events' ``tokens_per_second`` (real tokens of all
  processes per second) after the first warm-up steps;
- peak memory per process: ``results.json`` ``train.peak_memory_mb_per_process`` (CUDA max
  allocated on a GPU, max RSS on a CPU);
- MFU: 6 * N * tokens/s / (processes * peak bf16 FLOP/s per device), N the model's parameters
  (the ``run_start`` event), the peak 989e12 for H100/H200 SXM, 756e12 for H100 PCIe, 312e12 for
  A100, else what a bf16 matmul probe reaches on this device (then labelled "measured").

The resume check trains the bert-shaped model with ``distributed.strategy=fsdp`` and
``train.save_every`` twice: once unbroken, once killed (SIGKILL to torchrun and every worker) as
soon as a periodic checkpoint is on disk, then ``nlptasks resume``; the final weights
(``RUN/model``) must be equal tensor by tensor (``torch.equal``). It also merges the resumed
run's sharded ``checkpoints/last`` with ``nlptasks consolidate`` and compares it with the run's
final model. Prints one table and writes ``OUT/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
SST2 = SHARED / "sst2"
WIKI = SHARED / "wikitext2_raw"

# Dense bf16 peak of one device, FLOP/s (datasheets, without sparsity).
PEAKS = (("H100 PCIE", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12))


@dataclass
class Sizes:
    """What one mode trains: the model shapes, steps, batches and data sizes."""

    tiny: bool
    steps: int  # optimizer steps of a throughput run
    warmup: int  # step events left out of the median
    bert_batch: int
    gpt2_batch: int
    bert_rows: int  # training examples written for the sentiment runs
    wiki_train_lines: int | None
    wiki_eval_lines: int
    sst2_eval: int
    resume_steps: int
    resume_every: int

    @classmethod
    def for_mode(cls, cpu_smoke: bool, steps: int | None) -> Sizes:
        if cpu_smoke:
            return cls(True, steps or 3, 1, 8, 4, 400, 400, 40, 64, 20, 5)
        return cls(False, steps or 20, 5, 32, 8, 8192, None, 300, 256, 24, 8)


@dataclass
class RunReport:
    name: str
    model: str
    strategy: str
    processes: int
    status: str = "not run"
    detail: str = ""
    seconds: float = 0.0
    run_dir: str = ""
    effective: dict[str, Any] = field(default_factory=dict)
    parameters: int | None = None
    steps: int | None = None
    step_events: int = 0
    tokens_per_second: float | None = None
    tokens_per_second_per_process: float | None = None
    mfu: float | None = None
    peak_memory_mb_per_process: list[float] = field(default_factory=list)
    state_memory_mb_per_process: list[float] = field(default_factory=list)
    train_loss: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------- data
def sst2_rows(limit: int, words: int) -> tuple[list[tuple[str, int]], Path | None, str]:
    """Training rows for the sentiment runs: consecutive SST-2 train sentences of one label
    joined to about ``words`` words, so each example fills its 128 tokens (as run_glue pads);
    generated sentences where the data is absent. Returns rows, the eval file, the source."""
    train = SST2 / "train.tsv"
    if train.is_file() and (SST2 / "dev.tsv").is_file():
        rows: list[tuple[str, int]] = []
        pending: dict[int, list[str]] = {0: [], 1: []}
        with train.open(encoding="utf-8") as handle:
            next(handle)  # header: sentence<TAB>label
            for line in handle:
                text, _, label_text = line.rstrip("\n").rpartition("\t")
                label = int(label_text)
                pending[label].append(text.strip())
                if sum(len(t.split()) for t in pending[label]) >= words:
                    rows.append((" ".join(pending[label]), label))
                    pending[label] = []
                    if len(rows) >= limit:
                        break
        return rows, SST2 / "dev.tsv", f"{train} (sentences of one label joined to ~{words} words)"
    return _generated_sentiment(limit, words), None, "generated sentences (no ../shared/data/sst2)"


def _words(text: str) -> list[str]:
    return text.split()


def _generated_sentiment(limit: int, words: int) -> list[tuple[str, int]]:
    rng = random.Random(0)
    good = _words("gripping funny moving charming clever best wonderful sharp warm")
    bad = _words("dull tedious boring worse clumsy flat lifeless weak tired")
    filler = _words("the film story cast script and a of its with this one")
    rows = []
    for i in range(limit):
        label = i % 2
        mood = good if label else bad
        rows.append((" ".join(rng.choice(mood + filler) for _ in range(words)), label))
    return rows


def wiki_files(out: Path, eval_lines: int) -> tuple[Path, Path, str]:
    """Train on wiki.test.raw, evaluate on wiki.valid.raw (the shared copy has no train split);
    generated text where the data is absent."""
    test, valid = WIKI / "wiki.test.raw", WIKI / "wiki.valid.raw"
    if test.is_file() and valid.is_file():
        return test, valid, f"{test} (train) and {valid} (eval, first {eval_lines} lines)"
    rng = random.Random(0)
    vocab = _words("the of and in to a was is for on as by with he it at from his an were are")
    vocab += _words("history city river war music album season game film team world state")
    lines = [" ".join(rng.choice(vocab) for _ in range(rng.randint(20, 120))) for _ in range(6000)]
    (out / "data").mkdir(parents=True, exist_ok=True)
    train, evaluation = out / "data" / "gen.train.txt", out / "data" / "gen.eval.txt"
    train.write_text("\n".join(lines[:5000]) + "\n", encoding="utf-8")
    evaluation.write_text("\n".join(lines[5000:]) + "\n", encoding="utf-8")
    return train, evaluation, "generated text (no ../shared/data/wikitext2_raw)"


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        handle.write("sentence\tlabel\n")
        for text, label in rows:
            handle.write(f"{text.replace(chr(9), ' ')}\t{label}\n")


def read_lines(path: Path, limit: int | None) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle if line.strip()]
    return lines[:limit] if limit else lines


# ------------------------------------------------------------------------------ models
def build_bert(folder: Path, texts: list[str], tiny: bool) -> Path:
    """A random BERT of bert-base's shape (BertConfig's defaults: vocabulary 30,522 even when
    the trained tokenizer has fewer words; tiny: hidden 32, 2 layers) and a WordPiece
    tokenizer trained on ``texts``."""
    from transformers import BertConfig

    from nlptasks.testing.tiny_models import make_tiny_bert

    if tiny:
        return make_tiny_bert(folder, texts)
    return make_tiny_bert(
        folder,
        texts,
        shape={"vocab_size": BertConfig().vocab_size},
        vocab_size=BertConfig().vocab_size,
    )


def build_gpt2(folder: Path, texts: list[str], tiny: bool) -> Path:
    """A random GPT-2 of gpt2's shape (GPT2Config's defaults: 124M, context 1,024; tiny:
    hidden 32, 2 layers, context 128) and a byte-level BPE tokenizer trained on ``texts``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    eos = "<|endoftext|>"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    target = 1000 if tiny else GPT2Config().vocab_size
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=target,
            special_tokens=[eos],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=eos, eos_token=eos, unk_token=eos, pad_token=eos
    )
    tokenizer.model_max_length = 128 if tiny else 1024
    tokenizer.save_pretrained(folder)
    eos_id = tok.token_to_id(eos)
    ids = {"bos_token_id": eos_id, "eos_token_id": eos_id, "pad_token_id": eos_id}
    torch.manual_seed(0)
    if tiny:
        config = GPT2Config(
            vocab_size=tok.get_vocab_size(), n_positions=128, n_embd=32, n_layer=2, n_head=2, **ids
        )
    else:
        config = GPT2Config(**ids)  # vocab 50257 >= the trained vocabulary: gpt2's 124M
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


# -------------------------------------------------------------------------- processes
def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (torchrun starts each worker in its own session,
    so killing torchrun's process group would leave the workers running)."""
    import psutil  # accelerate depends on it

    try:
        root = psutil.Process(pid)
        return [pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    for member in reversed(process_tree(pid)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, sig)


def torchrun(processes: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(processes)]  # fmt: skip


def launch(
    command: list[str], log: Path, timeout: float, env: dict[str, str], kill_when: Any = None
) -> tuple[int | None, str, bool]:
    """Run ``command`` (output to ``log``); kill its whole tree on timeout or as soon as
    ``kill_when()`` says so. Returns (exit code, log tail, killed by kill_when)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        started, killed, code = time.monotonic(), False, None
        try:
            while True:
                code = proc.poll()
                if code is not None:
                    break
                if kill_when is not None and kill_when():
                    kill_tree(proc.pid)
                    proc.wait()
                    killed, code = True, None
                    break
                if time.monotonic() - started > timeout:
                    kill_tree(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        kill_tree(proc.pid)
                        proc.wait()
                    code = 124
                    break
                time.sleep(0.05)
        except BaseException:  # Ctrl-C or an error here: leave no worker behind
            kill_tree(proc.pid)
            raise
    return code, tail(log), killed


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def events(run_dir: Path) -> list[dict[str, Any]]:
    found = []
    with contextlib.suppress(OSError):
        for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
    return found


# ------------------------------------------------------------------------------ checks
class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cpu = args.cpu_smoke
        self.sizes = Sizes.for_mode(self.cpu, args.steps)
        self.out = Path(args.out).expanduser().resolve()
        self.processes = 2 if self.cpu else args.gpus
        self.started = time.monotonic()
        self.notes: list[str] = []
        self.env = dict(os.environ)
        self.env.setdefault("HF_HUB_OFFLINE", "1")
        self.env.setdefault("HF_DATASETS_OFFLINE", "1")
        self.env.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.env.setdefault("HF_DATASETS_CACHE", str(self.out / "hf-datasets-cache"))
        # Same kernels for the unbroken and the resumed run (cuBLAS picks by workspace).
        self.env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if self.cpu:
            self.env["CUDA_VISIBLE_DEVICES"] = ""  # gloo on CPUs even where a GPU is visible
        self.precision = "no" if self.cpu else "bf16"
        self.device_name = "cpu" if self.cpu else gpu_name()
        self.models: dict[str, dict[str, Any]] = {}
        self.budget = args.budget_seconds or (170.0 if self.cpu else 420.0)

    def left(self) -> float:
        """Seconds of the budget left: no run starts after it (one running may end later)."""
        return self.budget - (time.monotonic() - self.started)

    def timeout(self) -> float:
        """A run's time limit: a hung collective must not eat the whole call."""
        if self.cpu:
            return min(120.0, max(30.0, self.left() + 40.0))
        return min(240.0, max(90.0, self.left() + 60.0))

    # ---------------------------------------------------------------------------- set-up
    def prepare(self) -> dict[str, Any]:
        sizes, out = self.sizes, self.out
        rows, sst2_eval, sst2_source = sst2_rows(sizes.bert_rows, 20 if sizes.tiny else 110)
        write_tsv(out / "data" / "sentiment.train.tsv", rows)
        if sst2_eval is None:
            write_tsv(
                out / "data" / "sentiment.eval.tsv", _generated_sentiment(sizes.sst2_eval, 30)
            )
            sst2_eval = out / "data" / "sentiment.eval.tsv"
        wiki_train, wiki_eval, wiki_source = wiki_files(out, sizes.wiki_eval_lines)
        built = time.monotonic()
        # The rows are (nearly) all of SST-2 train: the tokenizer learns from what it encodes.
        bert = build_bert(out / "models" / "bert-base-shape", [t for t, _ in rows], sizes.tiny)
        gpt2_texts = read_lines(wiki_train, sizes.wiki_train_lines) + read_lines(wiki_eval, None)
        gpt2 = build_gpt2(out / "models" / "gpt2-shape", gpt2_texts, sizes.tiny)
        self.models = {
            "bert": {
                "task": "sentiment",
                "recipe": "bert-base",
                "path": bert,
                "overrides": [
                    f"model={bert}",
                    "~data.dataset",
                    "~data.dataset_config",
                    f"data.train_path={out / 'data' / 'sentiment.train.tsv'}",
                    f"data.eval_path={sst2_eval}",
                    f"data.max_eval_examples={sizes.sst2_eval}",
                    "data.max_length=128",
                    f"train.batch_size={sizes.bert_batch}",
                ],
            },
            "gpt2": {
                "task": "generation",
                "recipe": "gpt2",
                "path": gpt2,
                "overrides": [
                    f"model={gpt2}",
                    "~data.dataset",
                    "~data.dataset_config",
                    f"data.train_path={wiki_train}",
                    f"data.eval_path={wiki_eval}",
                    f"data.max_eval_examples={sizes.wiki_eval_lines}",
                    *(
                        [f"data.max_train_examples={sizes.wiki_train_lines}"]
                        if sizes.wiki_train_lines
                        else []
                    ),
                    f"options.block_size={128 if sizes.tiny else 1024}",
                    f"train.batch_size={sizes.gpt2_batch}",
                    f"train.eval_batch_size={sizes.gpt2_batch}",
                ],
            },
        }
        return {
            "sentiment_data": sst2_source,
            "generation_data": wiki_source,
            "models_built_seconds": round(time.monotonic() - built, 1),
        }

    def common(self, steps: int) -> list[str]:
        return [
            f"train.max_steps={steps}",
            f"train.mixed_precision={self.precision}",
            f"train.eval_every={steps}",  # one evaluation, at the end (not every epoch)
            "train.log_every=1",
            "train.bootstrap_resamples=0",
        ]

    def strategy_overrides(self, strategy: str) -> list[str]:
        if strategy == "fsdp":
            return ["distributed.strategy=fsdp", "distributed.preset=fsdp2"]
        if strategy == "deepspeed":
            return ["distributed.strategy=deepspeed", "distributed.preset=zero2"]
        return ["distributed.strategy=ddp"]

    def run_command(self, model: str, strategy: str, run_dir: Path, extra: list[str]) -> list[str]:
        spec = self.models[model]
        return [
            *torchrun(self.processes), "-m", "nlptasks.cli", "run", spec["task"],
            "--recipe", spec["recipe"], *spec["overrides"], *extra,
            *self.strategy_overrides(strategy),
            "--output-dir", str(run_dir), "--json", "-q",
        ]  # fmt: skip

    # ------------------------------------------------------------------------ throughput
    def throughput(self, model: str, strategy: str, peak: float | None) -> RunReport:
        name = f"{model}-{strategy}"
        report = RunReport(name, model, strategy, self.processes)
        if self.left() < 45:
            report.status, report.detail = "skipped", "the time budget (--budget-seconds) is spent"
            return report
        run_dir = self.out / "runs" / name
        extra = [*self.common(self.sizes.steps), "train.save_checkpoints=false"]
        command = self.run_command(model, strategy, run_dir, extra)
        started = time.monotonic()
        code, log_tail, _ = launch(
            command, self.out / "logs" / f"{name}.log", self.timeout(), self.env
        )
        report.seconds = round(time.monotonic() - started, 1)
        report.run_dir = str(run_dir)
        self.read_run(report, run_dir, peak)
        if code == 0 and (run_dir / "results.json").is_file():
            report.status = "ok"
        else:
            report.status = "timeout" if code == 124 else f"failed (exit {code})"
            report.detail = log_tail
        return report

    def read_run(self, report: RunReport, run_dir: Path, peak: float | None) -> None:
        found = events(run_dir)
        start = next((e for e in found if e.get("type") == "run_start"), {})
        report.parameters = start.get("parameters")
        steps = [e for e in found if e.get("type") == "step" and e.get("tokens_per_second")]
        report.step_events = len(steps)
        measured = steps[self.sizes.warmup :] or steps
        if measured:
            report.tokens_per_second = round(
                statistics.median(e["tokens_per_second"] for e in measured), 1
            )
            report.tokens_per_second_per_process = round(
                report.tokens_per_second / self.processes, 1
            )
            if peak and report.parameters:
                flops = 6 * report.parameters * report.tokens_per_second
                report.mfu = round(flops / (self.processes * peak), 4)
        results_file = run_dir / "results.json"
        if results_file.is_file():
            results = json.loads(results_file.read_text(encoding="utf-8"))
            train = results.get("train", {})
            report.steps = train.get("steps")
            report.train_loss = train.get("train_loss")
            report.effective = train.get("distributed", {})
            report.peak_memory_mb_per_process = train.get("peak_memory_mb_per_process", [])
            report.state_memory_mb_per_process = train.get("state_memory_mb_per_process") or []
            report.metrics = results.get("metrics", {}).get("eval", {})
        else:
            end = next((e for e in found if e.get("type") == "train_end"), {})
            report.peak_memory_mb_per_process = end.get("peak_memory_mb", [])

    # ---------------------------------------------------------------------------- resume
    def resume_check(self) -> dict[str, Any]:
        """Unbroken vs killed-at-a-checkpoint-then-resumed, FSDP, the bert-shaped model."""
        sizes, model = self.sizes, "bert"
        report: dict[str, Any] = {"model": model, "strategy": "fsdp", "processes": self.processes}
        if self.processes == 1:
            report["note"] = (
                "one process trains plainly whatever the strategy: this checks plain "
                "checkpoints, not shards"
            )
        if self.left() < (30 if self.cpu else 120):  # three runs and a merge
            report["status"] = "skipped: the time budget (--budget-seconds) is spent"
            return report
        extra = [
            *self.common(sizes.resume_steps),
            "train.save_checkpoints=true",
            f"train.save_every={sizes.resume_every}",
        ]
        unbroken, broken = (
            self.out / "runs" / "resume-unbroken",
            self.out / "runs" / "resume-killed",
        )
        logs = self.out / "logs"
        code, log_tail, _ = launch(
            self.run_command(model, "fsdp", unbroken, extra), logs / "resume-unbroken.log",
            self.timeout(), self.env,
        )  # fmt: skip
        if code != 0:
            return {**report, "status": f"unbroken run failed (exit {code})", "detail": log_tail}

        def checkpoint_on_disk() -> bool:
            return any(
                e.get("type") == "checkpoint" and e.get("kind") == "last"
                and int(e.get("step", 0)) >= sizes.resume_every
                for e in events(broken)
            )  # fmt: skip

        code, log_tail, killed = launch(
            self.run_command(model, "fsdp", broken, extra), logs / "resume-killed.log",
            self.timeout(), self.env, kill_when=checkpoint_on_disk,
        )  # fmt: skip
        if not killed:
            return {
                **report,
                "status": f"inconclusive: the run ended (exit {code}) before a checkpoint "
                f"of step {sizes.resume_every} or later was seen",
                "detail": log_tail,
            }
        at = max((int(e["step"]) for e in events(broken) if e.get("type") == "step"), default=None)
        saved = [e["step"] for e in events(broken) if e.get("type") == "checkpoint"]
        report["killed_after_step"] = at
        report["checkpoints_before_kill"] = saved
        resume = [*torchrun(self.processes), "-m", "nlptasks.cli", "resume", str(broken),
                  "--json", "-q"]  # fmt: skip
        code, log_tail, _ = launch(resume, logs / "resume-resumed.log", self.timeout(), self.env)
        if code != 0:
            return {**report, "status": f"resume failed (exit {code})", "detail": log_tail}
        resumed = [e for e in events(broken) if e.get("type") == "resume"]
        report["resumed_from_step"] = resumed[-1]["step"] if resumed else None
        equal, total, worst = compare_models(unbroken / "model", broken / "model")
        report["final_model_tensors_equal"] = f"{equal}/{total}"
        if total == 0:
            report["detail"] = "the two model folders share no tensor name"
        report["max_abs_difference"] = worst
        report["bitwise_equal"] = equal == total and total > 0
        report["status"] = "ok" if report["bitwise_equal"] else "DIFFERENT"
        report.update(self.consolidate_check(broken))
        return report

    def consolidate_check(self, run_dir: Path) -> dict[str, Any]:
        """``nlptasks consolidate RUN/checkpoints/last`` vs the run's final model (its only
        evaluation is at the last step, so that checkpoint holds the final weights)."""
        last = run_dir / "checkpoints" / "last"
        if not (last / "shards").is_dir():
            return {"consolidate": "not applicable (checkpoints/last is not sharded)"}
        if self.left() < 30:
            return {"consolidate": "skipped: the time budget is spent"}
        merged = self.out / "consolidated"
        shutil.rmtree(merged, ignore_errors=True)
        command = [sys.executable, "-m", "nlptasks.cli", "consolidate", str(last), str(merged)]
        code, log_tail, _ = launch(command, self.out / "logs" / "consolidate.log", 120, self.env)
        if code != 0:
            return {"consolidate": f"failed (exit {code})", "consolidate_detail": log_tail}
        equal, total, worst = compare_models(run_dir / "model", merged)
        if total == 0:
            return {"consolidate": "DIFFERENT: no tensor name in common with RUN/model"}
        return {
            "consolidate": "ok" if equal == total and total > 0 else "DIFFERENT",
            "consolidated_tensors_equal_to_final_model": f"{equal}/{total}",
            "consolidated_max_abs_difference": worst,
        }


def compare_models(a: Path, b: Path) -> tuple[int, int, float | None]:
    """(tensors equal by torch.equal, tensors compared, largest absolute difference) over the
    names both model folders hold."""
    import torch
    from safetensors.torch import load_file

    def weights(folder: Path) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for file in sorted(folder.glob("*.safetensors")):
            found.update(load_file(str(file)))
        return found

    left, right = weights(a), weights(b)
    names = sorted(set(left) & set(right))
    equal, worst = 0, 0.0
    for name in names:
        x, y = left[name], right[name]
        if x.shape == y.shape and torch.equal(x, y):
            equal += 1
        elif x.shape == y.shape:
            worst = max(worst, float((x.float() - y.float()).abs().max()))
        else:
            worst = float("inf")
    return equal, len(names), (None if equal == len(names) else worst)


# --------------------------------------------------------------------------- hardware
def gpu_name() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        found = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip().splitlines()  # fmt: skip
        if found:
            return found[0].strip()
    code = "import torch; print(torch.cuda.get_device_name(0))"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return probe.stdout.strip() or "unknown"


def peak_flops(name: str, cpu: bool) -> tuple[float | None, str]:
    """The device's dense bf16 peak (datasheet), else a matmul probe's rate ("measured")."""
    upper = name.upper()
    for key, value in PEAKS:
        if not cpu and key in upper:
            return value, f"datasheet dense bf16 ({key})"
    size, dtype, device = (512, "float32", "cpu") if cpu else (8192, "bfloat16", "cuda")
    code = f"""
import time, torch
a = torch.randn({size}, {size}, dtype=torch.{dtype}, device="{device}")
b = torch.randn({size}, {size}, dtype=torch.{dtype}, device="{device}")
sync = torch.cuda.synchronize if "{device}" == "cuda" else (lambda: None)
for _ in range(3): a @ b
sync(); t = time.perf_counter(); n = 20
for _ in range(n): a @ b
sync(); print(2 * {size} ** 3 * n / (time.perf_counter() - t))
"""
    probe = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    try:
        return float(probe.stdout.strip().splitlines()[-1]), f"measured ({dtype} matmul probe)"
    except (ValueError, IndexError):
        return None, f"unknown (probe failed: {tail_text(probe.stderr)})"


def tail_text(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def deepspeed_available(cpu: bool) -> tuple[bool, str]:
    if cpu:
        return False, "--cpu-smoke: DeepSpeed needs GPUs (nlptasks refuses it on CPUs)"
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import deepspeed; print(deepspeed.__version__)"],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return False, "import deepspeed took over 180 s"
    if probe.returncode != 0:
        why = tail_text(probe.stderr) or "import failed"
        return False, f"import deepspeed failed ({why}); pip install 'nlptasks[deepspeed]'"
    return True, f"deepspeed {probe.stdout.strip()}"


# ----------------------------------------------------------------------------- output
def table(reports: list[RunReport], peak_source: str) -> str:
    head = ("run", "procs", "effective", "steps", "tokens/s", "tok/s/proc", "MFU",
            "peak MB/proc (min-max)", "state MB/proc", "status")  # fmt: skip
    rows = [head]
    for r in reports:
        peaks = r.peak_memory_mb_per_process
        memory = f"{min(peaks):,.0f}-{max(peaks):,.0f}" if peaks else "-"
        rows.append(
            (
                r.name,
                str(r.processes),
                str(r.effective.get("strategy", "-")),
                str(r.steps if r.steps is not None else "-"),
                f"{r.tokens_per_second:,.0f}" if r.tokens_per_second else "-",
                f"{r.tokens_per_second_per_process:,.0f}"
                if r.tokens_per_second_per_process
                else "-",
                f"{r.mfu:.1%}" if r.mfu is not None else "-",
                memory,
                f"{max(r.state_memory_mb_per_process):,.1f}"
                if r.state_memory_mb_per_process
                else "-",
                r.status if not r.detail or r.status == "ok" else f"{r.status}: {first(r.detail)}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    text = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )
    return (
        f"{text}\nMFU = 6 * parameters * tokens/s / (processes * peak); peak: {peak_source}\n"
        "state MB/proc: weights and optimizer states one process held at the end (the largest)"
    )


def first(detail: str) -> str:
    for line in reversed(detail.splitlines()):
        if "Error" in line or "error" in line:
            return line.strip()[:160]
    return tail_text(detail)[:160]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=0, help="processes (GPUs) per run")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny models, 2 CPU processes")
    parser.add_argument(
        "--out", default="runs/gpu-check", help="output folder (an earlier one is replaced)"
    )
    parser.add_argument("--steps", type=int, help="optimizer steps of a throughput run")
    parser.add_argument("--budget-seconds", type=float,
                        help="start no run after this (default 420; --cpu-smoke 170)")  # fmt: skip
    parser.add_argument("--models", default="bert,gpt2")
    parser.add_argument("--strategies", default="ddp,fsdp,deepspeed")
    parser.add_argument("--no-resume-check", action="store_true")
    parser.add_argument("--resume-check-only", action="store_true", help="no throughput runs")
    args = parser.parse_args(argv)
    # SIGTERM as an exception, so that a stopped check stops its runs too (launch's finally).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if not args.cpu_smoke and args.gpus < 1:
        print("No GPU: run with --gpus N on a GPU machine, or --cpu-smoke.", file=sys.stderr)
        return 2
    check = Check(args)
    marker = check.out / ".gpu_check"
    if check.out.exists() and any(check.out.iterdir()) and not marker.exists():
        print(
            f"{check.out} exists and is not a gpu_check output: choose a new --out.",
            file=sys.stderr,
        )
        return 2
    shutil.rmtree(check.out, ignore_errors=True)  # an earlier gpu_check output: replaced
    check.out.mkdir(parents=True)
    marker.write_text("written by benchmarks/gpu_check.py; replaced by its next run\n")
    models = [m for m in args.models.split(",") if m]
    strategies = [s for s in args.strategies.split(",") if s]
    print(f"gpu_check: {check.processes} process(es) on {check.device_name}; output {check.out}",
          flush=True)  # fmt: skip
    summary: dict[str, Any] = {
        "mode": "cpu-smoke" if check.cpu else "gpu",
        "processes": check.processes,
        "device": check.device_name,
        "python": platform.python_version(),
        "mixed_precision": check.precision,
        "sizes": asdict(check.sizes),
    }
    summary.update(check.prepare())
    with contextlib.suppress(Exception):
        import torch

        summary["torch"] = torch.__version__
    peak, peak_source = peak_flops(check.device_name, check.cpu)
    summary["peak_flops_per_device"], summary["peak_source"] = peak, peak_source
    if check.processes == 1:
        check.notes.append(
            "1 process: FSDP and ZeRO need 2+ processes (one process trains plainly), so only "
            "ddp (plain single-process training) is measured"
        )
        strategies = ["ddp"]
    ds_ok, ds_note = deepspeed_available(check.cpu) if "deepspeed" in strategies else (False, "")
    summary["deepspeed"] = ds_note
    if "deepspeed" in strategies and not ds_ok:
        check.notes.append(f"deepspeed skipped: {ds_note}")
    reports: list[RunReport] = []
    resume: dict[str, Any] = {"status": "not run (--no-resume-check)"}
    # DDP and FSDP of every model, the resume check, then DeepSpeed (slowest to start); with
    # the time budget spent, what is left is reported as skipped. The smoke run interleaves
    # the models so that a short budget still covers both models and both strategies.
    plan: list[tuple[str, str]] = [(m, s) for s in strategies if s != "deepspeed" for m in models]
    if check.cpu:
        plan = sorted(plan, key=lambda p: (p[0] == "bert") != (p[1] == "ddp"))
    plan.insert(min(2, len(plan)) if check.cpu else len(plan), ("resume", "fsdp"))
    plan += [(m, "deepspeed") for m in models if "deepspeed" in strategies]
    if args.resume_check_only:
        plan = [("resume", "fsdp")]
    for model, strategy in plan:
        if model == "resume":
            if args.no_resume_check or "bert" not in models:
                continue
            print("- resume check (fsdp, SIGKILL at a checkpoint, resume, compare) ...", flush=True)
            resume = check.resume_check()
            print(f"  {resume.get('status')}", flush=True)
            continue
        if strategy == "deepspeed" and not ds_ok:
            reports.append(RunReport(f"{model}-deepspeed", model, "deepspeed", check.processes,
                                     "skipped", ds_note))  # fmt: skip
            continue
        print(f"- {model} {strategy} ...", flush=True)
        reports.append(check.throughput(model, strategy, peak))
        print(f"  {reports[-1].status} in {reports[-1].seconds} s", flush=True)
    summary["runs"] = [asdict(r) for r in reports]
    summary["resume_check"] = resume
    summary["notes"] = check.notes
    summary["seconds"] = round(time.monotonic() - check.started, 1)
    (check.out / "gpu_check.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print()
    print(table(reports, peak_source))
    print()
    print("resume check: " + json.dumps({k: v for k, v in resume.items() if k != "detail"}))
    if resume.get("detail"):
        print(resume["detail"])
    for note in check.notes:
        print(f"note: {note}")
    for r in reports:
        if r.status not in ("ok", "skipped"):
            print(
                f"\n{r.name} ({r.status}), last lines of {check.out}/logs/{r.name}.log:\n{r.detail}"
            )
    print(f"\nwrote {check.out / 'gpu_check.json'} in {summary['seconds']} s")
    failed = [r for r in reports if r.status not in ("ok", "skipped")]
    resume_ok = resume.get("status") in ("ok", "not run (--no-resume-check)")
    merged_ok = not str(resume.get("consolidate", "")).startswith(("failed", "DIFFERENT"))
    return 0 if not failed and resume_ok and merged_ok else 1


if __name__ == "__main__":
    sys.exit(main())
