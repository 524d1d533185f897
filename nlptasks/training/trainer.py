"""The one shared training loop, on accelerate.

Reads top to bottom: set-up (seed, accelerator, data order, optimizer, schedule), then for
each optimizer step: gather the micro-batches of one accumulation window, forward, loss
normalised by the targets of the whole window, backward, clip, optimizer and scheduler step;
periodically evaluate, log and checkpoint. The same code runs on CPU, one GPU or many
processes started by ``torchrun`` / ``accelerate launch``: data parallel (DDP), or sharded
(FSDP2, DeepSpeed) by the recipe's ``distributed:`` section.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import shlex
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors import SafetensorError
from torch.utils.data import DataLoader

from nlptasks.batching import Collate, collate_for
from nlptasks.errors import NlpTasksError, PluginError, RunInterrupted
from nlptasks.events import EventLog
from nlptasks.models import carry_license_files
from nlptasks.task import check_step, declared_metrics
from nlptasks.training import checkpoints, distributed, sharded
from nlptasks.training.distributed import make_accelerator
from nlptasks.training.sampling import LengthGroupedBatchSampler

if TYPE_CHECKING:
    import datasets

    from nlptasks.evaluation.evaluator import Evaluation, Evaluator
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
    """Wall time of the whole training loop, its evaluations and checkpoints included."""
    history: list[dict[str, Any]] = field(default_factory=list)
    eval_seconds: float = 0.0
    """The part of ``train_seconds`` spent in evaluations."""
    tokens_seen: int = 0
    """Real (non-pad) input tokens trained on (this process's run; not kept across a resume)."""
    first_step_seconds: float | None = None
    """The first optimizer step's wall time: with ``train.compile``, compilation included."""
    peak_memory_mb: list[float] = field(default_factory=list)
    """Each process's peak memory: its device's allocations on a GPU, its resident set on a
    CPU."""
    state_memory_mb: list[float] = field(default_factory=list)
    """The weights and optimizer states each process holds at the end (what sharding
    divides)."""
    evaluation: Evaluation | None = None
    """The evaluation that gave ``metrics``, when this process still holds it (not for a
    best checkpoint evaluated before a resume)."""


class Trainer:
    """Fine-tunes ``model`` on ``train_dataset`` for ``task`` with the recipe's settings."""

    def __init__(
        self,
        task: Task,
        model: torch.nn.Module,
        tokenizer: Any,
        config: TrainConfig,
        train_dataset: datasets.Dataset | None,
        evaluator: Evaluator | None = None,
        events: EventLog | None = None,
        checkpoint_dir: Path | None = None,
        accelerator: Accelerator | None = None,
        collate: Collate | None = None,
    ) -> None:
        self.task = task
        self.collate = collate or collate_for(task, tokenizer)
        self.tokenizer = tokenizer
        self.config = config
        self.train_dataset = train_dataset
        self.evaluator = evaluator
        self.checkpoint_dir = checkpoint_dir
        # One accelerator per run: the evaluator's, when there is one.
        self.accelerator = (
            accelerator
            or (evaluator.accelerator if evaluator else None)
            or make_accelerator(config)
        )
        self.events = events or EventLog(None, enabled=self.accelerator.is_main_process)
        # The recipe guarantees batch_size is a multiple of the accumulation steps.
        self.micro_batch_size = config.batch_size // config.gradient_accumulation_steps
        self.model = model
        self._optimizer: torch.optim.Optimizer | None = None
        self._scheduler: Any = None
        self._evaluations: dict[int, Evaluation] = {}
        """This process's evaluations of the best and the latest step, by step."""
        self._grad_norms: list[torch.Tensor] = []
        """The gradient norms (before clipping) of the steps since the last logged one."""
        self.eval_intervals = False
        """Whether every ``eval`` event carries its metrics' bootstrap intervals (the run's
        trackers plot them); off by default: the bootstrap costs time at every evaluation."""

    # ----------------------------------------------------------------------------- training
    def train(
        self, stop: StopRequests | None = None, resume_from: Path | None = None
    ) -> TrainResult:
        """Train; on SIGINT/SIGTERM finish the current step, save ``last`` and raise
        :class:`RunInterrupted`, so an interrupted run loses at most one step.

        ``stop`` is the caller's signal handler when it covers more than training (the runner
        covers the final save too); ``resume_from`` is a checkpoint to continue exactly from.
        """
        if stop is not None:
            return self._train(stop, resume_from)
        with StopRequests() as own:
            return self._train(own, resume_from)

    def _train(self, stop: StopRequests, resume_from: Path | None) -> TrainResult:
        cfg, acc = self.config, self.accelerator
        set_seed(cfg.seed)
        best = _BestTracker.for_task(self.task, cfg)
        sampler, loop = self._plan()
        optimizer, scheduler = self._setup_optimization(loop)
        stopped_early = False
        if resume_from is not None:
            if self._resume(resume_from, loop, best):
                # The signal came after the step but before its evaluation: evaluate now, as
                # the unbroken run did, or the best checkpoint and early stopping would differ.
                stopped_early = self._evaluate_and_checkpoint(loop, best)
            stopped_early = stopped_early or best.patience_exhausted()
        loop.reset_window(time.perf_counter())
        loop.started = loop.window_started  # speed and ETA count training, not set-up
        for epoch, index, window, tokens, in_epoch in self._windows(sampler, *loop.position):
            # This epoch's steps: fixed-size batches give every epoch the same number, token
            # budgets (train.max_tokens_per_batch) one per epoch's order.
            loop.epoch_steps = in_epoch
            if stopped_early or loop.step >= loop.total_steps:  # resumed at the very end
                break
            self.model.train()
            step_started = time.perf_counter()
            local = (sum(_batch_size(b) for b in window), tokens)
            stepped, examples, tokens = self._optimizer_step(window, optimizer, local)
            if loop.first_step_seconds is None:
                # With train.compile the first step compiles the model: said apart, because
                # it is paid once and would otherwise hide in the examples/s.
                loop.first_step_seconds = time.perf_counter() - step_started
            # No step without targets, nor on fp16 overflow: the schedule waits for it too.
            if stepped is not None and not acc.optimizer_step_was_skipped:
                scheduler.step()
            loss = stepped if stepped is not None else 0.0
            optimizer.zero_grad(set_to_none=True)
            loop.record(loss, examples, epoch + min(1.0, (index + 1) / in_epoch), tokens)
            # Where a resumed run picks up: the next window of this epoch, or the next epoch.
            loop.position = (epoch, index + 1) if index + 1 < in_epoch else (epoch + 1, 0)
            self._log_step(loop, float(scheduler.get_last_lr()[0]))
            if stop.requested(acc):
                self._stop_for_signal(loop, stop, best, self._evaluation_due(loop, index))
            if self._evaluation_due(loop, index) and self._evaluate_and_checkpoint(loop, best):
                break  # early stopping
            saved = bool(best.history) and best.history[-1]["step"] == loop.step
            if cfg.save_every and loop.step % cfg.save_every == 0 and not saved:
                self._save_checkpoint("last", loop, best, best.last_metrics)
            if loop.step == loop.total_steps:
                break
        return self._finish(loop, best)

    def _resume(self, path: Path, loop: _Loop, best: _BestTracker) -> bool:
        """Continue exactly where the checkpoint at ``path`` stopped; True if the evaluation
        of its step is still to be done."""
        state = json.loads((path / checkpoints.STATE_FILE).read_text())
        saved_with = int(state.get("num_processes", 1))
        if saved_with != self.accelerator.num_processes:
            # The data is sharded by process: another count would replay or skip examples.
            elsewhere = ""
            if (path / sharded.SHARDS).is_dir():
                elsewhere = (
                    f"; or merge its shards into a plain model (nlptasks consolidate {path} "
                    f"DEST) and start a new run from model=DEST"
                )
            raise NlpTasksError(
                f"This run was trained on {saved_with} process(es); resume it with the same "
                f"number (e.g. torchrun --nproc_per_node {saved_with} -m nlptasks.cli resume "
                f"RUN), not {self.accelerator.num_processes}{elsewhere}."
            )
        checkpoints.load_into(path, self.accelerator, self.model, self._optimizer, self._scheduler)
        loop.step = int(state["step"])
        loop.epoch = float(state["epoch"])
        loop.position = (int(state["position"]["epoch"]), int(state["position"]["index"]))
        loop.examples_seen = int(state["examples_seen"])
        loop.loss_sum = float(state["loss_sum"])
        loop.earlier_seconds = float(state.get("train_seconds", 0.0))
        loop.eval_seconds = float(state.get("eval_seconds", 0.0))
        best.restore(state["best"])
        self.events.emit("resume", step=loop.step, checkpoint=str(path))
        return bool(state.get("pending_evaluation"))

    def _plan(self) -> tuple[LengthGroupedBatchSampler, _Loop]:
        """The data order and the length of training."""
        cfg, acc = self.config, self.accelerator
        assert self.train_dataset is not None
        # Our own sampler shards batches across processes, so every process takes the same
        # number of steps and the order depends only on the seed and epoch.
        sampler = LengthGroupedBatchSampler(
            self.train_dataset["length"],
            self.micro_batch_size,
            seed=cfg.seed,
            group_by_length=cfg.group_by_length,
            num_replicas=acc.num_processes,
            rank=acc.process_index,
            length_bucket=cfg.length_bucket,
            max_tokens=cfg.max_tokens_per_batch,
        )
        if len(sampler) == 0:
            raise NlpTasksError(
                f"The training data ({len(self.train_dataset)} examples) is smaller than one "
                f"batch per process. Lower train.batch_size or add data."
            )
        steps_per_epoch = math.ceil(len(sampler) / cfg.gradient_accumulation_steps)
        total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
        if cfg.max_tokens_per_batch and not cfg.max_steps:
            # Token budgets give each epoch's order its own number of batches: count them, so
            # that train.epochs=3 is three whole epochs (and the schedule ends there).
            whole, part = int(cfg.epochs), cfg.epochs - int(cfg.epochs)
            counts = []
            for epoch in range(whole + (part > 0)):
                sampler.set_epoch(epoch)
                counts.append(math.ceil(len(sampler) / cfg.gradient_accumulation_steps))
            sampler.set_epoch(0)
            total_steps = sum(counts[:whole]) + (math.ceil(part * counts[-1]) if part else 0)
            total_steps = max(1, total_steps)
        return sampler, _Loop(total_steps=total_steps, steps_per_epoch=steps_per_epoch)

    def _setup_optimization(
        self, loop: _Loop
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        cfg, acc = self.config, self.accelerator
        optimizer = self._make_optimizer()
        warmup = cfg.warmup_steps or math.ceil(cfg.warmup_ratio * loop.total_steps)
        scheduler = self._make_scheduler(optimizer, warmup, loop.total_steps)
        if cfg.compile:
            # In place (nn.Module.compile): the state dict keeps its names, so checkpoints,
            # the saved model and resume are those of the uncompiled model.
            self.model.compile()
        distributed.prepare_plugin_for(acc, self.model)
        # The scheduler is not passed to prepare(): accelerate would step it once per process.
        self.model, optimizer = acc.prepare(self.model, optimizer)
        self._optimizer, self._scheduler = optimizer, scheduler  # checkpoints save them
        self.events.emit(
            "train_start",
            total_steps=loop.total_steps,
            steps_per_epoch=loop.steps_per_epoch,
            micro_batch_size=self.micro_batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            num_processes=acc.num_processes,
            warmup_steps=warmup,
            fused_optimizer=bool(optimizer.defaults.get("fused")),
            compiled=cfg.compile,
            mixed_precision=acc.mixed_precision,
        )
        return optimizer, scheduler

    def _log_step(self, loop: _Loop, learning_rate: float) -> None:
        """A ``step`` event every ``log_every`` steps (and the last); the display moves
        every step."""
        if loop.step % self.config.log_every and loop.step != loop.total_steps:
            self.events.progress(step=loop.step, epoch=round(loop.epoch, 4))
            return
        now = time.perf_counter()
        elapsed = now - loop.started
        # The mean norm over the logged window (absent without clipping: not computed).
        norms, self._grad_norms = self._grad_norms, []
        grad_norm = float(torch.stack(norms).mean()) if norms else None
        self.events.emit(
            "step",
            step=loop.step,
            total_steps=loop.total_steps,
            epoch=round(loop.epoch, 4),
            loss=loop.window_loss / loop.window_steps,
            learning_rate=learning_rate,
            grad_norm=grad_norm,
            examples_per_second=loop.window_examples / max(now - loop.window_started, 1e-9),
            tokens_per_second=loop.window_tokens / max(now - loop.window_started, 1e-9),
            examples_seen=loop.examples_seen,
            tokens_seen=loop.tokens_seen,
            elapsed_seconds=elapsed,
            eta_seconds=elapsed / loop.step * (loop.total_steps - loop.step),
        )
        loop.reset_window(now)

    def _stop_for_signal(
        self, loop: _Loop, stop: StopRequests, best: _BestTracker, evaluation_due: bool
    ) -> None:
        """Save ``last`` (noting an evaluation that was due, which the resumed run does
        first), record the interruption and raise :class:`RunInterrupted`."""
        self._save_checkpoint("last", loop, best, best.last_metrics, evaluation_due)
        self.events.emit("interrupted", step=loop.step, signal=stop.signal_name)
        if self.checkpoint_dir is not None and self.config.save_checkpoints:
            launcher = "nlptasks"
            if self.accelerator.num_processes > 1:
                launcher = (
                    f"torchrun --nproc_per_node {self.accelerator.num_processes} -m nlptasks.cli"
                )
            kept = (
                f"saved in {self.checkpoint_dir / 'last'}. Resume with: {launcher} resume "
                f"{shlex.quote(str(self.checkpoint_dir.parent))}"
            )
        else:
            kept = "nothing was saved (train.save_checkpoints=false). Start a new run."
        raise RunInterrupted(
            f"Interrupted by {stop.signal_name} at step {loop.step} of {loop.total_steps}; {kept}",
            exit_code=stop.exit_code,
        )

    def _evaluation_due(self, loop: _Loop, index: int) -> bool:
        if self.evaluator is None:
            return False
        every = self.config.eval_every
        end_of_epoch = index + 1 == loop.epoch_steps
        due = (every and loop.step % every == 0) or (not every and end_of_epoch)
        return bool(due) or loop.step == loop.total_steps

    def _evaluate_and_checkpoint(self, loop: _Loop, best: _BestTracker) -> bool:
        """Evaluate, keep the best and last checkpoints; True when early stopping is due."""
        assert self.evaluator is not None
        final = loop.step == loop.total_steps
        generate = self.evaluator.generation_due(len(best.history) + 1, final)
        started = time.perf_counter()
        evaluation = self.evaluator.evaluate(self.model, generate=generate)
        metrics = evaluation.metrics
        loop.eval_seconds += time.perf_counter() - started
        improved = best.update(loop.step, round(loop.epoch, 4), metrics)
        # Keep what the final metrics may be: the best step's evaluation and the latest.
        self._evaluations = {
            step: e for step, e in self._evaluations.items() if step == best.step
        } | {loop.step: evaluation}
        extra: dict[str, Any] = {}
        if self.eval_intervals and self.accelerator.is_main_process:
            from nlptasks.evaluation import uncertainty

            found = uncertainty.of_evaluation(self.task, evaluation, self.config)
            extra["intervals"] = {name: [i.low, i.high] for name, i in found.intervals.items()}
        self.events.emit(
            "eval",
            step=loop.step,
            epoch=round(loop.epoch, 4),
            metrics=metrics,
            is_best=improved,
            **extra,
        )
        if improved:
            self._save_checkpoint("best", loop, best, metrics)
        self._save_checkpoint("last", loop, best, metrics)
        if best.patience_exhausted():
            self.events.emit(
                "early_stop",
                step=loop.step,
                reason=f"{best.metric} did not improve for {best.patience} evaluations",
            )
            return True
        return False

    def _finish(self, loop: _Loop, best: _BestTracker) -> TrainResult:
        train_seconds = loop.earlier_seconds + time.perf_counter() - loop.started
        if self.evaluator is None:
            self._save_checkpoint("last", loop, best, {})
        metrics = best.last_metrics
        final_step = loop.step
        # The final model is the best checkpoint: reload it if training moved past it.
        saved = self.config.save_checkpoints and self.checkpoint_dir is not None
        if best.step is not None and best.step != loop.step and saved:
            assert self.checkpoint_dir is not None
            try:
                checkpoints.load_weights(self.checkpoint_dir / "best", self.accelerator, self.model)
                metrics = best.metrics_at(best.step)
                final_step = best.step
            except (OSError, SafetensorError, NlpTasksError) as exc:
                # A damaged best checkpoint must not cost the whole run: keep the last model.
                warnings.warn(
                    f"The best checkpoint (step {best.step}) is unusable ({exc}); the final "
                    f"model is the last one (step {loop.step}).",
                    stacklevel=2,
                )
        peaks = _peak_memory_per_process(self.accelerator)
        held = _state_memory_per_process(self.accelerator, self.model, self._optimizer)
        self.events.emit(
            "train_end",
            peak_memory_mb=peaks,
            state_memory_mb=held,
            step=loop.step,
            best_step=best.step,
            train_seconds=train_seconds,
            first_step_seconds=loop.first_step_seconds,
            tokens_seen=loop.tokens_seen,
            stopped_early=best.stopped_early,
        )
        return TrainResult(
            global_step=loop.step,
            epochs=round(loop.epoch, 4),
            train_loss=loop.loss_sum / max(loop.step, 1),
            metrics=metrics,
            best_step=best.step,
            best_metric=best.value,
            stopped_early=best.stopped_early,
            examples_seen=loop.examples_seen,
            train_seconds=train_seconds,
            history=best.history,
            eval_seconds=loop.eval_seconds,
            tokens_seen=loop.tokens_seen,
            first_step_seconds=loop.first_step_seconds,
            peak_memory_mb=peaks,
            state_memory_mb=held,
            evaluation=self._evaluations.get(final_step) if metrics else None,
        )

    def _windows(
        self, sampler: LengthGroupedBatchSampler, first_epoch: int = 0, first_index: int = 0
    ) -> Iterator[tuple[int, int, list[dict[str, torch.Tensor]], int, int]]:
        """(epoch, index, window, tokens, windows in the epoch) for each accumulation window,
        epoch after epoch, from window ``first_index`` of ``first_epoch``: a window is a list
        of up to ``gradient_accumulation_steps`` micro-batches on the device, ``index`` the
        optimizer step within its epoch and ``tokens`` the window's real (non-pad) tokens."""
        assert self.train_dataset is not None
        for epoch in itertools.count(first_epoch):
            index = first_index if epoch == first_epoch else 0
            sampler.set_epoch(epoch)
            in_epoch = math.ceil(len(sampler) / self.config.gradient_accumulation_steps)
            # A resumed epoch starts at its window: earlier batches are skipped by index
            # arithmetic in the sampler, never loaded.
            sampler.start = index * self.config.gradient_accumulation_steps
            # Its own generator: a DataLoader draws a seed from the global RNG for every new
            # iterator, and a resumed run makes one mid-epoch where the unbroken run did not,
            # which would shift every later dropout mask.
            loader = DataLoader(
                self.train_dataset,
                batch_sampler=sampler,
                collate_fn=self.collate,
                generator=torch.Generator(),
            )
            window: list[dict[str, torch.Tensor]] = []
            tokens = 0
            for batch in loader:
                # Counted on the host before the copy: no device sync for a statistic.
                tokens += _real_tokens(batch)
                window.append({k: v.to(self.accelerator.device) for k, v in batch.items()})
                if len(window) == self.config.gradient_accumulation_steps:
                    yield epoch, index, window, tokens, in_epoch
                    index += 1
                    window, tokens = [], 0
            if window:  # the last, shorter window of the epoch
                yield epoch, index, window, tokens, in_epoch

    def _optimizer_step(
        self,
        window: list[dict[str, torch.Tensor]],
        optimizer: torch.optim.Optimizer,
        counts: tuple[int, int] = (0, 0),
    ) -> tuple[float | None, int, int]:
        """Forward and backward over one accumulation window, clip, step; return its loss
        (None for a window without a single target on any process: no step is taken) and
        the window's examples and real tokens on all processes.

        The gradient is the sum of every target's loss gradient divided by the targets of the
        whole window on all processes, so accumulation 4 x 8 equals batch 32 even when batches
        hold different numbers of targets (tokens), which the task counts in the same forward
        pass. The sum is never backpropagated as it is: fp16's loss scaling would overflow on
        it. Each backward takes the loss over the targets seen so far (a mean), the gradients
        accumulated before are rescaled to match, and the last micro-batch, once every
        process's count is known, makes the mean the window's.

        ``counts`` (this process's examples and real tokens) ride on the same all-reduce and
        come back summed over processes, after the loss (token budgets give each process its
        own batch sizes).
        """
        acc = self.accelerator
        if distributed.is_sharded(acc):
            return self._sharded_optimizer_step(window, optimizer, counts)
        window_loss, seen = 0.0, 0.0  # this process's summed loss and targets so far
        loss, total = 0.0, 0.0
        for i, batch in enumerate(window):
            last = i == len(window) - 1
            # No gradient all-reduce but on the last micro-batch: DDP decides that in the
            # forward pass, so the forward must be inside no_sync too.
            with acc.no_sync(self.model) if not last else contextlib.nullcontext():
                loss_sum, count = self._forward(batch)
                window_loss += loss_sum.detach().float().item()
                if not last:
                    if seen + count > 0:
                        _scale_gradients(self.model, seen / (seen + count))
                        acc.backward(loss_sum / (seen + count))
                    seen += count
                    continue
            # One all-reduce for both: the NaN check and the targets of every process.
            loss, total, summed = self._reduce(window_loss, seen + count, counts)
            if total == 0:
                return None, *summed
            # DDP averages gradients over processes; multiplying by their number undoes that.
            world = acc.num_processes
            _scale_gradients(self.model, seen * world / total)
            acc.backward(loss_sum * (world / total))
        return self._step(optimizer, loss, total, summed)

    def _sharded_optimizer_step(
        self,
        window: list[dict[str, torch.Tensor]],
        optimizer: torch.optim.Optimizer,
        counts: tuple[int, int],
    ) -> tuple[float | None, int, int]:
        """The same window under FSDP or DeepSpeed, whose gradients are reduced over the
        processes at every backward (FSDP2 would otherwise keep a whole unsharded gradient
        per process, out of reach of the rescaling): the targets of all processes are
        counted before each backward, the gradients so far rescaled to the new count, so the
        window's gradient is again the sum over its targets divided by their number.
        DeepSpeed owns its gradient buffers: each micro-batch is normalised by its own
        targets and DeepSpeed averages the micro-batches (exact with no accumulation)."""
        acc = self.accelerator
        world = acc.num_processes
        owns_gradients = acc.distributed_type.value == "DEEPSPEED"
        window_loss, seen, before = 0.0, 0.0, 0.0  # local loss, local targets, global targets
        loss, total, summed = 0.0, 0.0, (0, 0)
        for i, batch in enumerate(window):
            last = i == len(window) - 1
            loss_sum, count = self._forward(batch)
            window_loss += loss_sum.detach().float().item()
            seen += count
            loss, total, summed = self._reduce(window_loss, seen, counts if last else (0, 0))
            if total == before and not (owns_gradients and last):
                continue  # no targets in this micro-batch on any process: nothing to add
            if owns_gradients:
                # DeepSpeed steps at the window's last backward, and divides every loss by
                # its configured accumulation steps: undone here for a shorter last window.
                acc.gradient_state._set_sync_gradients(last)
                scale = self.config.gradient_accumulation_steps / len(window)
                acc.backward(loss_sum * (world * scale / max(total - before, 1.0)))
                acc.gradient_state._set_sync_gradients(True)
            else:
                # The optimizer's parameters, not the model's: FSDP2 registers unsharded
                # parameters on a module between its forward and backward (the root's and
                # the LM head's stay unsharded after the forward), while the gradients
                # accumulate on the sharded ones the optimizer holds.
                _scale_gradients_of(_optimized(optimizer), before / total)
                acc.backward(loss_sum * (world / total))
            before = total
        if total == 0:
            return None, *summed
        return self._step(optimizer, loss, total, summed)

    def _reduce(
        self, window_loss: float, targets: float, counts: tuple[int, int]
    ) -> tuple[float, float, tuple[int, int]]:
        """One all-reduce for the NaN check, the targets and the counts of every process:
        (summed loss, targets, (examples, tokens))."""
        acc = self.accelerator
        totals = acc.reduce(
            torch.tensor([window_loss, targets, *counts], dtype=torch.float64, device=acc.device),
            reduction="sum",
        ).tolist()
        # Summed over processes, a NaN anywhere is a NaN everywhere: every process stops
        # at the same step (a lone raise would leave the others waiting in a collective),
        # and before the optimizer writes NaNs into the weights.
        if not math.isfinite(totals[0]):
            raise NlpTasksError(
                "The training loss became NaN or infinite. Lower train.learning_rate or "
                "use train.mixed_precision=no."
            )
        return totals[0], totals[1], (int(totals[2]), int(totals[3]))

    def _step(
        self,
        optimizer: torch.optim.Optimizer,
        loss: float,
        total: float,
        summed: tuple[int, int],
    ) -> tuple[float | None, int, int]:
        if self.config.max_grad_norm:
            norm = self.accelerator.clip_grad_norm_(
                self.model.parameters(), self.config.max_grad_norm
            )
            # Kept as a tensor: read (one device sync) only when a step is logged.
            if norm is not None:
                self._grad_norms.append(torch.as_tensor(norm).detach().float())
        optimizer.step()
        return float(loss / total), *summed

    def _forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float]:
        """The task's forward pass on a training batch: its summed loss and target count."""
        step = check_step(self.task, self.task.forward(self.model, batch), _batch_size(batch))
        if not step.loss.requires_grad:
            raise PluginError(
                f"Task '{self.task.info.name}': forward's loss has no gradient (detached, or "
                f"computed under no_grad); compute it from the model's outputs."
            )
        count = float(step.count.sum()) if step.count is not None else float(len(step.loss))
        return step.loss.sum(), count

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
        if self.config.fused_optimizer:
            try:
                # The fused kernel does the whole update in one pass (CPU, CUDA: torch >= 2.4).
                return torch.optim.AdamW(groups, lr=self.config.learning_rate, fused=True)
            except (RuntimeError, TypeError, ValueError):
                pass
        # foreach: one kernel per parameter group and operation, not per parameter.
        return torch.optim.AdamW(groups, lr=self.config.learning_rate, foreach=True)

    def _make_scheduler(
        self, optimizer: torch.optim.Optimizer, warmup: int, total: int
    ) -> torch.optim.lr_scheduler.LRScheduler:
        from transformers import get_scheduler

        name: str = self.config.scheduler
        if name == "constant":
            name = "constant_with_warmup"  # warmup applies to every schedule
        return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)

    # --------------------------------------------------------------------------- evaluation
    def evaluate(self, generate: bool = False) -> Evaluation:
        """The current model on the eval set (all processes take part)."""
        if self.evaluator is None:
            raise NlpTasksError("This trainer has no eval data to evaluate on.")
        return self.evaluator.evaluate(self.model, generate=generate)

    # -------------------------------------------------------------------------- checkpoints
    def _save_checkpoint(
        self,
        kind: str,
        loop: _Loop,
        best: _BestTracker,
        metrics: dict[str, float],
        pending_evaluation: bool = False,
    ) -> None:
        if not self.config.save_checkpoints or self.checkpoint_dir is None:
            return
        acc = self.accelerator
        state = {
            "step": loop.step,
            "epoch": loop.epoch,
            "position": {"epoch": loop.position[0], "index": loop.position[1]},
            "examples_seen": loop.examples_seen,
            "loss_sum": loop.loss_sum,
            "train_seconds": loop.earlier_seconds + time.perf_counter() - loop.started,
            "eval_seconds": loop.eval_seconds,
            "total_steps": loop.total_steps,
            "metrics": metrics,
            "best": best.snapshot(),
            "pending_evaluation": pending_evaluation,
        }

        shards = distributed.is_sharded(acc)

        def write_model(path: Path) -> None:
            model = acc.unwrap_model(self.model)
            if shards:
                # The weights are in the shards; the folder keeps what reads them.
                model.config.save_pretrained(path)
                if getattr(model, "generation_config", None) is not None:
                    model.generation_config.save_pretrained(path)
            else:
                model.save_pretrained(path)
            self.tokenizer.save_pretrained(path)
            # The base model's terms (Gemma's) bind the fine-tuned one too: keep them with it.
            carry_license_files(getattr(model, "name_or_path", ""), path)

        target = checkpoints.save(
            self.checkpoint_dir,
            kind,
            acc,
            write_model,
            self._optimizer,
            self._scheduler,
            state,
            (lambda path: sharded.save(path, self.model, self._optimizer)) if shards else None,
        )
        if target is not None:
            self.events.emit("checkpoint", kind=kind, step=loop.step, path=str(target))
            if kind == "last" and self.config.save_total_limit:
                checkpoints.keep_numbered(target, loop.step, self.config.save_total_limit)


@dataclass
class _Loop:
    """Counters of the training loop and of the current logging window."""

    total_steps: int
    steps_per_epoch: int
    """Optimizer steps of the first epoch (of every epoch unless batches have a token budget)."""
    epoch_steps: int = 0
    """Optimizer steps of the epoch being trained."""
    step: int = 0
    epoch: float = 0.0
    examples_seen: int = 0
    loss_sum: float = 0.0
    position: tuple[int, int] = (0, 0)
    """(epoch, window index) of the next optimizer step."""
    earlier_seconds: float = 0.0
    """Training time before this process resumed the run."""
    eval_seconds: float = 0.0
    """Time spent in evaluations, resumed runs' earlier ones included."""
    window_loss: float = 0.0
    window_steps: int = 0
    window_examples: int = 0
    window_tokens: int = 0
    tokens_seen: int = 0
    first_step_seconds: float | None = None
    """Wall time of this process's first optimizer step (with train.compile: compiling)."""
    started: float = field(default_factory=time.perf_counter)
    window_started: float = field(default_factory=time.perf_counter)

    def record(self, loss: float, examples: int, epoch: float, tokens: int = 0) -> None:
        self.step += 1
        self.epoch = epoch
        self.examples_seen += examples
        self.tokens_seen += tokens
        self.window_tokens += tokens
        self.loss_sum += loss
        self.window_loss += loss
        self.window_steps += 1
        self.window_examples += examples

    def reset_window(self, now: float) -> None:
        self.window_loss, self.window_steps, self.window_examples = 0.0, 0, 0
        self.window_tokens = 0
        self.window_started = now


@dataclass
class _BestTracker:
    """The best evaluation so far by ``metric``, and patience for early stopping."""

    metric: str
    greater_is_better: bool
    patience: int | None
    value: float | None = None
    step: int | None = None
    evals_without_improvement: int = 0
    stopped_early: bool = False
    last_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def for_task(cls, task: Any, config: TrainConfig) -> _BestTracker:
        # The direction is the task's declaration, never a guess from the metric's name.
        metric = config.metric_for_best or task.info.main_metric
        spec = declared_metrics(task).get(metric)
        if spec is None:
            raise NlpTasksError(
                f"train.metric_for_best '{metric}' is not a metric of task '{task.info.name}' "
                f"(it has {', '.join(declared_metrics(task))})."
            )
        return cls(metric, spec.greater_is_better, config.early_stopping_patience)

    def update(self, step: int, epoch: float, metrics: dict[str, float]) -> bool:
        """Record an evaluation; True if it is the best so far. An evaluation without the
        metric (a generation metric on a loss-only evaluation) neither improves nor counts
        against patience."""
        self.last_metrics = metrics
        self.history.append({"step": step, "epoch": epoch, **metrics})
        value = metrics.get(self.metric)
        if value is None:
            return False
        better = self.value is None or (
            value > self.value if self.greater_is_better else value < self.value
        )
        if better:
            self.value, self.step = value, step
            self.evals_without_improvement = 0
        else:
            self.evals_without_improvement += 1
        return better

    def snapshot(self) -> dict[str, Any]:
        """What a checkpoint keeps of this tracker (for exact resume)."""
        return {
            "value": self.value,
            "step": self.step,
            "evals_without_improvement": self.evals_without_improvement,
            "last_metrics": self.last_metrics,
            "history": self.history,
            "stopped_early": self.stopped_early,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        self.value, self.step = saved["value"], saved["step"]
        self.evals_without_improvement = int(saved["evals_without_improvement"])
        self.last_metrics = dict(saved["last_metrics"])
        self.history = list(saved["history"])
        self.stopped_early = bool(saved.get("stopped_early", False))

    def patience_exhausted(self) -> bool:
        if self.patience is not None and self.evals_without_improvement >= self.patience:
            self.stopped_early = True
        return self.stopped_early

    def metrics_at(self, step: int) -> dict[str, float]:
        record = next(h for h in self.history if h["step"] == step)
        return {k: v for k, v in record.items() if k not in ("step", "epoch")}


def _optimized(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _scale_gradients_of(params: list[torch.Tensor], factor: float) -> None:
    for param in params:
        if param.grad is not None:
            param.grad.mul_(factor)


def _scale_gradients(model: torch.nn.Module, factor: float) -> None:
    """Multiply every gradient by ``factor`` (torchtune's ``scale_grads``)."""
    for param in model.parameters():
        if param.grad is not None:
            param.grad.mul_(factor)


def _peak_memory_per_process(accelerator: Accelerator) -> list[float]:
    """Every process's peak memory in MB (a collective: all processes call it)."""
    device = accelerator.device
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    gathered = accelerator.gather(torch.tensor([peak], dtype=torch.float64, device=device))
    return [round(float(v), 1) for v in gathered.tolist()]


def _state_memory_per_process(
    accelerator: Accelerator, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None
) -> list[float]:
    """Every process's MB of weights and optimizer states, its own shards only under
    sharding (a collective: all processes call it)."""

    def local_bytes(tensor: torch.Tensor) -> int:
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        return local.numel() * local.element_size()

    held = sum(local_bytes(p) for p in model.parameters())
    if optimizer is not None:
        for state in optimizer.state.values():
            held += sum(local_bytes(v) for v in state.values() if isinstance(v, torch.Tensor))
    device = accelerator.device
    gathered = accelerator.gather(torch.tensor([held / 2**20], dtype=torch.float64, device=device))
    return [round(float(v), 3) for v in gathered.tolist()]


def _real_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Non-pad input tokens of a host batch (its attention mask; else every input id)."""
    mask = batch.get("attention_mask")
    if mask is not None:
        return int(mask.sum())
    ids = batch.get("input_ids")
    return int(ids.numel()) if ids is not None else 0


def _batch_size(batch: dict[str, torch.Tensor]) -> int:
    return int(next(iter(batch.values())).shape[0])


class StopRequests:
    """Turns SIGINT/SIGTERM into a flag the run checks at safe points (after each training
    step; the final save finishes first). A second signal stops at once."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.exit_code = 130
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        # Signal handlers can only be set from the main thread (not in a notebook worker).
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal_name is not None:
            # The second signal: the user does not want to wait for the step or the save.
            # Files are written atomically, so what is on disk stays whole.
            raise SystemExit(128 + signum)
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum  # the shell's convention: 130 SIGINT, 143 SIGTERM

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
