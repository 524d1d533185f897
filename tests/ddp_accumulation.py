"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2``: the trainer's
accumulation step on a real DistributedDataParallel model (gloo), with micro-batches that
hold uneven numbers of targets (0 on some, on one process only for the last), against one
full batch of every process's data. Process 0 prints one JSON line: each process's result."""

from __future__ import annotations

import contextlib
import copy
import json
import types
from typing import Any

import torch
import torch.distributed as dist

from nlptasks import Step, TaskInfo
from nlptasks.training.distributed import leave
from nlptasks.training.trainer import Trainer

VOCAB, HIDDEN = 7, 5


class Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(VOCAB, HIDDEN)
        self.out = torch.nn.Linear(HIDDEN, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.embedding(ids)))


class TokenTask:
    info = TaskInfo("tokens", "token-classification", ())

    def forward(self, model: Any, batch: dict[str, torch.Tensor]) -> Step:
        logits = model(batch["ids"])
        losses = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), batch["labels"], reduction="none", ignore_index=-100
        )
        return Step(losses.sum(1), (batch["labels"] != -100).sum(1))


class Accelerator:
    """What _optimizer_step uses of accelerate's Accelerator, over torch.distributed."""

    def __init__(self, world: int) -> None:
        self.num_processes, self.device = world, torch.device("cpu")

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def no_sync(self, model: Any) -> Any:
        return model.no_sync() if self.num_processes > 1 else contextlib.nullcontext()

    def reduce(self, tensor: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        if self.num_processes > 1:
            dist.all_reduce(tensor)
        return tensor


def micro_batch(rows: int, targets: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, VOCAB, (rows, 4), generator=generator)
    labels = torch.randint(0, VOCAB, (rows, 4), generator=generator)
    labels.view(-1)[targets:] = -100
    return {"ids": ids, "labels": labels}


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    generator = torch.Generator().manual_seed(1)
    windows = [
        [micro_batch(2, n, generator) for n in counts] for counts in ((0, 5, 0, 9), (3, 11, 2, 0))
    ]
    torch.manual_seed(0)
    base = Model()
    reference = copy.deepcopy(base)  # one full batch of every process's data
    steps = [TokenTask().forward(reference, b) for window in windows for b in window]
    counts = [s.count for s in steps if s.count is not None]
    total = int(torch.stack([c.sum() for c in counts]).sum())
    loss = torch.stack([s.loss.sum() for s in steps]).sum()
    (loss / total).backward()

    model = torch.nn.parallel.DistributedDataParallel(copy.deepcopy(base))
    reduces: list[int] = []

    # No annotations: DDP checks a comm hook's annotations against its own types.
    def hook(state, bucket):
        reduces.append(1)
        work = dist.all_reduce(bucket.buffer().div_(world), async_op=True)
        return work.get_future().then(lambda f: f.value()[0])

    model.register_comm_hook(None, hook)
    trainer: Any = types.SimpleNamespace(
        accelerator=Accelerator(world),
        task=TokenTask(),
        model=model,
        config=types.SimpleNamespace(max_grad_norm=None),
    )
    for method in ("_forward", "_reduce", "_step"):
        setattr(trainer, method, types.MethodType(getattr(Trainer, method), trainer))
    Trainer._optimizer_step(trainer, windows[rank], torch.optim.SGD(model.parameters(), lr=0.0))
    error = max(
        (p.grad - q.grad).abs().max().item()
        for p, q in zip(model.module.parameters(), reference.parameters(), strict=True)
    )
    found: list[Any] = [None] * world
    dist.all_gather_object(found, {"rank": rank, "all_reduces": len(reduces), "error": error})
    if rank == 0:  # one line: the processes' own prints could interleave on torchrun's stdout
        print(json.dumps(found), flush=True)
    # Exit here, with the DDP model alive: destroying the group and then freeing the model
    # (whose reducer holds the group last) deadlocked in 3 of 15 runs (a gloo worker waits
    # for the GIL while the main thread, holding it, waits for the group's lock).
    leave(0)


if __name__ == "__main__":
    main()
