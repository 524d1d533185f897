"""The one shared training loop, on accelerate.

Reads top to bottom: set-up (seed, accelerator, data order, optimizer, schedule), then for
each optimizer step: gather the micro-batches of one accumulation window, forward, loss
normalised by the targets of the whole window, backward, clip, optimizer and scheduler step;
periodically evaluate, log and checkpoint. The same code runs on CPU, one GPU or many
processes started by ``torchrun`` / ``accelerate launch`` (DDP).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from nlptasks.errors import NlpTasksError, RunInterrupted
from nlptasks.events import EventLog
from nlptasks.sampling import LengthGroupedBatchSampler

if TYPE_CHECKING:
    import datasets

    from nlptasks.recipes import TrainConfig
    from nlptasks.task import Task


@dataclass
class TrainResult:
    """What a training run did and the metrics of its final (best) model."""

    global_step: int
    epochs: float
    train_loss: float
    metrics: dict[str, float]
    best_step: int | None
    best_metric: float | None
    stopped_early: bool
    examples_seen: int
    train_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def make_accelerator(config: TrainConfig) -> Accelerator:
    """An Accelerator for the recipe's precision; refuses fp16 without a GPU in one line."""
    if config.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise NlpTasksError(
            "train.mixed_precision=fp16 needs a GPU. Use train.mixed_precision=bf16 or no."
        )
    from accelerate.state import AcceleratorState, GradientState

    # accelerate keeps one global state per process and refuses a second Accelerator with
    # other settings; a notebook or test session runs many recipes, so start each one afresh
    # (the distributed set-up, PartialState, is kept).
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    # Without an accelerator device, cpu=True is what makes torchrun's processes form a
    # gloo process group; otherwise each would silently train alone.
    return Accelerator(mixed_precision=config.mixed_precision, cpu=not _has_accelerator_device())


def _has_accelerator_device() -> bool:
    if torch.cuda.is_available():
        return True
    xpu = getattr(torch, "xpu", None)
    mps = getattr(torch.backends, "mps", None)
    return bool((xpu and xpu.is_available()) or (mps and mps.is_available()))


class Trainer:
    """Fine-tunes ``model`` on ``train_dataset`` for ``task`` with the recipe's settings."""

    def __init__(
        self,
        task: Task,
        model: torch.nn.Module,
        tokenizer: Any,
        config: TrainConfig,
        train_dataset: datasets.Dataset | None,
        eval_dataset: datasets.Dataset | None,
        events: EventLog | None = None,
        checkpoint_dir: Path | None = None,
        accelerator: Accelerator | None = None,
    ) -> None:
        self.task = task
        self.tokenizer = tokenizer
        self.config = config
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.checkpoint_dir = checkpoint_dir
        self.accelerator = accelerator or make_accelerator(config)
        self.events = events or EventLog(None, enabled=self.accelerator.is_main_process)
        if config.batch_size % config.gradient_accumulation_steps:
            raise NlpTasksError(
                f"train.batch_size ({config.batch_size}) must be a multiple of "
                f"train.gradient_accumulation_steps ({config.gradient_accumulation_steps})."
            )
        self.micro_batch_size = config.batch_size // config.gradient_accumulation_steps
        self.model = model
        self._eval_loader: DataLoader[Any] | None = None

    # ----------------------------------------------------------------------------- training
    def train(self) -> TrainResult:
        """Train; on SIGINT/SIGTERM finish the current step, save ``last`` and raise
        :class:`RunInterrupted`, so an interrupted run loses at most one step."""
        with _StopRequests() as stop:
            return self._train(stop)

    def _train(self, stop: _StopRequests) -> TrainResult:
        cfg, acc = self.config, self.accelerator
        assert self.train_dataset is not None
        set_seed(cfg.seed)

        # Data order: our own sampler shards batches across processes, so every process
        # takes the same number of steps and the order depends only on the seed and epoch.
        sampler = LengthGroupedBatchSampler(
            self.train_dataset["length"],
            self.micro_batch_size,
            seed=cfg.seed,
            group_by_length=cfg.group_by_length,
            num_replicas=acc.num_processes,
            rank=acc.process_index,
        )
        micro_batches_per_epoch = len(sampler)
        if micro_batches_per_epoch == 0:
            raise NlpTasksError(
                f"The training data ({len(self.train_dataset)} examples) is smaller than one "
                f"batch per process. Lower train.batch_size or add data."
            )
        steps_per_epoch = math.ceil(micro_batches_per_epoch / cfg.gradient_accumulation_steps)
        total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))

        optimizer = self._make_optimizer()
        warmup = cfg.warmup_steps or math.ceil(cfg.warmup_ratio * total_steps)
        scheduler = self._make_scheduler(optimizer, warmup, total_steps)
        # The scheduler is not passed to prepare(): accelerate would step it once per process.
        self.model, optimizer = acc.prepare(self.model, optimizer)

        self.events.emit(
            "train_start",
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            micro_batch_size=self.micro_batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            num_processes=acc.num_processes,
            warmup_steps=warmup,
            fused_optimizer=bool(optimizer.defaults.get("fused")),
        )

        metric_name = cfg.metric_for_best or self.task.main_metric
        # The task knows the direction of its main metric; for others, losses and
        # perplexities go down and everything else goes up.
        greater = (
            self.task.greater_is_better
            if metric_name == self.task.main_metric
            else not ("loss" in metric_name or "perplexity" in metric_name)
        )
        best_metric: float | None = None
        best_step: int | None = None
        evals_without_improvement = 0
        stopped_early = False
        history: list[dict[str, Any]] = []
        last_metrics: dict[str, float] = {}

        step, examples_seen, loss_window_sum, loss_window_count = 0, 0, 0.0, 0
        train_loss_sum, train_loss_count = 0.0, 0
        started = time.perf_counter()
        log_started, log_examples = started, 0
        epoch = 0
        windows = self._windows(sampler, epoch)
        while step < total_steps:
            try:
                index, window = next(windows)  # index: the optimizer step within the epoch
            except StopIteration:
                epoch += 1
                windows = self._windows(sampler, epoch)
                continue

            self.model.train()
            loss_value = self._optimizer_step(window, optimizer)
            if not acc.optimizer_step_was_skipped:  # fp16 overflow: the step did not happen
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            step_examples = sum(_batch_size(b) for b in window) * acc.num_processes
            examples_seen += step_examples
            log_examples += step_examples
            loss_window_sum += loss_value
            loss_window_count += 1
            train_loss_sum += loss_value
            train_loss_count += 1
            epoch_progress = epoch + min(1.0, (index + 1) / steps_per_epoch)

            if step % cfg.log_every == 0 or step == total_steps:
                elapsed = time.perf_counter() - log_started
                self.events.emit(
                    "step",
                    step=step,
                    total_steps=total_steps,
                    epoch=round(epoch_progress, 4),
                    loss=loss_window_sum / loss_window_count,
                    learning_rate=scheduler.get_last_lr()[0],
                    examples_per_second=log_examples / max(elapsed, 1e-9),
                    elapsed_seconds=time.perf_counter() - started,
                    eta_seconds=(time.perf_counter() - started) / step * (total_steps - step),
                )
                loss_window_sum, loss_window_count = 0.0, 0
                log_started, log_examples = time.perf_counter(), 0
            else:
                self.events.progress(step=step, epoch=round(epoch_progress, 4))

            if stop.requested(acc):
                self._save_checkpoint("last", step, last_metrics)
                self.events.emit("interrupted", step=step, signal=stop.signal_name)
                saved = self.checkpoint_dir is not None and cfg.save_checkpoints
                kept = (
                    f"the model so far is saved in {self.checkpoint_dir / 'last'}"
                    if saved and self.checkpoint_dir is not None
                    else "nothing was saved (train.save_checkpoints=false)"
                )
                raise RunInterrupted(
                    f"Interrupted by {stop.signal_name} at step {step} of {total_steps}; "
                    f"{kept}. Start a new run to train again."
                )

            end_of_epoch = index + 1 == steps_per_epoch
            due = (cfg.eval_every and step % cfg.eval_every == 0) or (
                not cfg.eval_every and end_of_epoch
            )
            if (due or step == total_steps) and self.eval_dataset is not None:
                last_metrics = self.evaluate()
                value = last_metrics.get(metric_name)
                if value is None:
                    raise NlpTasksError(
                        f"train.metric_for_best '{metric_name}' is not a metric of task "
                        f"'{self.task.name}' (it has {', '.join(last_metrics)})."
                    )
                improved = best_metric is None or (
                    value > best_metric if greater else value < best_metric
                )
                record = {"step": step, "epoch": round(epoch_progress, 4), **last_metrics}
                history.append(record)
                self.events.emit(
                    "eval", step=step, epoch=record["epoch"], metrics=last_metrics, is_best=improved
                )
                if improved:
                    best_metric, best_step = value, step
                    evals_without_improvement = 0
                    self._save_checkpoint("best", step, last_metrics)
                else:
                    evals_without_improvement += 1
                self._save_checkpoint("last", step, last_metrics)
                patience = cfg.early_stopping_patience
                if patience is not None and evals_without_improvement >= patience:
                    stopped_early = True
                    self.events.emit(
                        "early_stop",
                        step=step,
                        reason=f"{metric_name} did not improve for {patience} evaluations",
                    )
                    break
        train_seconds = time.perf_counter() - started
        if self.eval_dataset is None:
            self._save_checkpoint("last", step, {})
        # The final model is the best checkpoint: reload it if training moved past it.
        if best_step is not None and best_step != step and self._load_checkpoint("best"):
            last_metrics = next(h for h in history if h["step"] == best_step)
            last_metrics = {k: v for k, v in last_metrics.items() if k not in ("step", "epoch")}
        self.events.emit(
            "train_end",
            step=step,
            best_step=best_step,
            train_seconds=train_seconds,
            stopped_early=stopped_early,
        )
        return TrainResult(
            global_step=step,
            epochs=round(step / steps_per_epoch, 4),
            train_loss=train_loss_sum / max(train_loss_count, 1),
            metrics=last_metrics,
            best_step=best_step,
            best_metric=best_metric,
            stopped_early=stopped_early,
            examples_seen=examples_seen,
            train_seconds=train_seconds,
            history=history,
        )

    def _windows(
        self, sampler: LengthGroupedBatchSampler, epoch: int
    ) -> Iterator[tuple[int, list[dict[str, torch.Tensor]]]]:
        """(index, window) for each accumulation window of one epoch: a window is a list of
        up to ``gradient_accumulation_steps`` micro-batches on the device."""
        sampler.set_epoch(epoch)
        assert self.train_dataset is not None
        loader = DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self.task.collate)
        window: list[dict[str, torch.Tensor]] = []
        index = 0
        for batch in loader:
            window.append({k: v.to(self.accelerator.device) for k, v in batch.items()})
            if len(window) == self.config.gradient_accumulation_steps:
                yield index, window
                index += 1
                window = []
        if window:  # the last, shorter window of the epoch
            yield index, window

    def _optimizer_step(
        self, window: list[dict[str, torch.Tensor]], optimizer: torch.optim.Optimizer
    ) -> float:
        """Forward and backward over one accumulation window, clip, step; return its loss.

        Losses are summed per batch and divided by the targets of the whole window on all
        processes, so accumulation 4 x 8 equals batch 32 even when batches differ in size.
        """
        acc = self.accelerator
        counts = [self.task.count_targets(b) for b in window]
        total = acc.reduce(
            torch.tensor(float(sum(counts)), device=acc.device), reduction="sum"
        ).item()
        if total == 0:
            return 0.0
        # DDP averages gradients over processes; multiplying by their number undoes that.
        scale = acc.num_processes / total
        window_loss = 0.0
        for i, batch in enumerate(window):
            last = i == len(window) - 1
            # Skip the gradient all-reduce on all but the last micro-batch of the window.
            context = acc.no_sync(self.model) if not last else contextlib.nullcontext()
            with context:
                loss_sum = self.task.compute_loss(self.model, batch)
                acc.backward(loss_sum * scale)
            window_loss += loss_sum.detach().float().item()
        # Summed over processes, a NaN anywhere is a NaN everywhere: every process stops at
        # the same step (a lone raise would leave the others waiting in a collective), and
        # before the optimizer writes NaNs into the weights.
        loss = acc.reduce(torch.tensor(window_loss, device=acc.device), reduction="sum").item()
        if not math.isfinite(loss):
            raise NlpTasksError(
                "The training loss became NaN or infinite. Lower train.learning_rate or use "
                "train.mixed_precision=no."
            )
        if self.config.max_grad_norm:
            acc.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        optimizer.step()
        return loss / total

    def _make_optimizer(self) -> torch.optim.Optimizer:
        # No weight decay on biases and LayerNorm weights, as in the transformers examples.
        decay: list[torch.nn.Parameter] = []
        no_decay: list[torch.nn.Parameter] = []
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
        groups = [
            {"params": decay, "weight_decay": self.config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        try:
            # The fused kernel does the whole update in one pass (CPU and CUDA in torch >= 2.4).
            return torch.optim.AdamW(groups, lr=self.config.learning_rate, fused=True)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.AdamW(groups, lr=self.config.learning_rate)

    def _make_scheduler(
        self, optimizer: torch.optim.Optimizer, warmup: int, total: int
    ) -> torch.optim.lr_scheduler.LRScheduler:
        from transformers import get_scheduler

        name: str = self.config.scheduler
        if name == "constant":
            name = "constant_with_warmup"  # warmup applies to every schedule
        return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)

    # --------------------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, float]:
        """Metrics of the current model on the eval dataset (all processes take part)."""
        assert self.eval_dataset is not None
        acc = self.accelerator
        if self._eval_loader is None:
            loader = DataLoader(
                self.eval_dataset,
                batch_size=self.config.eval_batch_size,
                collate_fn=self.task.collate,
            )
            # prepare() shards evaluation across processes; gather_for_metrics drops the
            # duplicates it pads the last batch with.
            self._eval_loader = acc.prepare_data_loader(loader)
        was_training = self.model.training
        self.model.eval()
        outputs: list[dict[str, Any]] = []
        loss_sum, count = 0.0, 0.0
        with torch.no_grad():
            for batch in self._eval_loader:
                out = self.task.eval_step(self.model, batch)
                if "loss_count" not in out:
                    out["loss_count"] = torch.ones_like(out["loss"])
                # gather_for_metrics drops the examples accelerate repeats to even out the
                # last batch across processes; the loss goes through it too, or it would
                # count those examples twice.
                gathered = {k: v.cpu() for k, v in acc.gather_for_metrics(out).items()}
                loss_sum += float(gathered.pop("loss").double().sum())
                count += float(gathered.pop("loss_count").double().sum())
                outputs.append(gathered)
        metrics = {"loss": loss_sum / max(count, 1.0), **self.task.compute_metrics(outputs)}
        if was_training:
            self.model.train()
        return {k: float(v) for k, v in metrics.items()}

    # -------------------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, kind: str, step: int, metrics: dict[str, float]) -> None:
        if not self.config.save_checkpoints:
            return
        acc = self.accelerator
        # Every process reaches this barrier; only the main one (which has the dir) writes.
        acc.wait_for_everyone()
        if acc.is_main_process and self.checkpoint_dir is not None:
            target = self.checkpoint_dir / kind
            tmp = self.checkpoint_dir / f".{kind}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            acc.unwrap_model(self.model).save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            (tmp / "trainer_state.json").write_text(
                json.dumps({"step": step, "metrics": metrics}, indent=2)
            )
            # Swap in the finished checkpoint so an interruption never leaves a broken one.
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
            self.events.emit("checkpoint", kind=kind, step=step, path=str(target))
        acc.wait_for_everyone()

    def _load_checkpoint(self, kind: str) -> bool:
        if self.checkpoint_dir is None or not self.config.save_checkpoints:
            return False
        from safetensors.torch import load_file

        path = self.checkpoint_dir / kind / "model.safetensors"
        state = load_file(str(path), device=str(self.accelerator.device))
        model = self.accelerator.unwrap_model(self.model)
        # strict=False: tied weights (e.g. decoder = embeddings) are saved once.
        unexpected = model.load_state_dict(state, strict=False).unexpected_keys
        if unexpected:
            raise NlpTasksError(f"Checkpoint {path} does not match the model: {unexpected[:3]}.")
        return True


def _batch_size(batch: dict[str, torch.Tensor]) -> int:
    return int(next(iter(batch.values())).shape[0])


class _StopRequests:
    """Turns SIGINT/SIGTERM into a flag the training loop checks after each step."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequests:
        # Signal handlers can only be set from the main thread (not in a notebook worker).
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal_name = signal.Signals(signum).name

    def requested(self, accelerator: Accelerator) -> bool:
        """True on every process as soon as any process got a signal (all stop together)."""
        local = self.signal_name is not None
        if accelerator.num_processes == 1:
            return local
        flag = torch.tensor(float(local), device=accelerator.device)
        anyone = accelerator.reduce(flag, reduction="sum").item() > 0
        if anyone and self.signal_name is None:
            self.signal_name = "a signal to another process"
        return bool(anyone)
