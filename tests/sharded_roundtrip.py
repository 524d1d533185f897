"""Run by tests/test_fsdp.py under ``torchrun --nproc_per_node 2``: a tiny FSDP2 model and
its AdamW states saved as shards, changed, then read back, the weights alone (as the best
checkpoint is reloaded at the end of training) and with the optimizer (as on resume).
Process 0 prints one JSON line."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from nlptasks.training import sharded
from nlptasks.training.distributed import leave


def snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    tensors = [p.full_tensor().clone() for p in model.parameters()]
    for state in optimizer.state.values():
        tensors += [v.full_tensor().clone() for k, v in state.items() if k != "step"]
    return tensors


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    model(torch.randn(4, 6)).square().sum().backward()
    optimizer.step()
    optimizer.zero_grad()


if __name__ == "__main__":
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    train_step(model, optimizer)
    folder = Path(tempfile.mkdtemp()) if dist.get_rank() == 0 else None
    names = [str(folder)]
    dist.broadcast_object_list(names)
    folder = Path(names[0])
    sharded.save(folder, model, optimizer)
    dist.barrier()
    saved = snapshot(model, optimizer)
    train_step(model, optimizer)  # weights and states move on
    moved = snapshot(model, optimizer)
    sharded.load(folder, model, None)  # the weights alone
    weights = len(list(model.parameters()))
    after_weights = snapshot(model, optimizer)
    weights_back = all(
        torch.equal(a, b) for a, b in zip(after_weights[:weights], saved[:weights], strict=True)
    )
    states_kept = all(
        torch.equal(a, b) for a, b in zip(after_weights[weights:], moved[weights:], strict=True)
    )
    sharded.load(folder, model, optimizer)
    everything_back = all(
        torch.equal(a, b) for a, b in zip(snapshot(model, optimizer), saved, strict=True)
    )
    files = sorted(p.name for p in (folder / sharded.SHARDS).iterdir())
    if dist.get_rank() == 0:
        print(json.dumps({"weights_back": weights_back, "states_kept": states_kept,
                          "everything_back": everything_back, "files": files}))  # fmt: skip
    leave(0)  # no teardown: gloo can abort or deadlock there (nlptasks.training.distributed.leave)
