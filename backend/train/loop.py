"""What every training script does after computing its loss: step, log, checkpoint."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import torch


class Trainer:
    """Optimizer step with clipping, a JSON-lines log every `log_every` steps, checkpoints.

    Only the main rank logs and checkpoints; every rank steps.
    """

    def __init__(self, model, optimizer, out: Path, *, main: bool, total_steps: int, log_every: int,
                 ckpt_every: int, clip: float = 1.0):
        self.model, self.optimizer, self.main = model, optimizer, main
        self.total, self.log_every, self.ckpt_every, self.clip = total_steps, log_every, ckpt_every, clip
        self.checkpoint = Path(out) / "checkpoint"
        self.log = open(Path(out) / "log.jsonl", "a") if main else None
        self.started = self.last = time.time()

    def step(self, loss: torch.Tensor, step: int, extra: dict) -> int:
        """Apply one update for `step`; returns the next step number."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        step += 1
        if self.main and (step % self.log_every == 0 or step == self.total):
            now = time.time()
            record = {"step": step, "loss": loss.item(), **extra, "lr": self.optimizer.param_groups[0]["lr"],
                      "sec_per_step": (now - self.last) / self.log_every, "elapsed": now - self.started}
            self.last = now
            self.log.write(json.dumps(record) + "\n")
            self.log.flush()
            print(json.dumps(record), flush=True)
        if self.main and (step % self.ckpt_every == 0 or step == self.total):
            save_checkpoint(self.checkpoint, self.model, self.optimizer, step)
        return step

    @property
    def seconds(self) -> float:
        return time.time() - self.started


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 1e-5 + 0.5 * (peak - 1e-5) * (1 + math.cos(math.pi * min(1.0, progress)))


def save_checkpoint(path: Path, model, optimizer, step: int) -> None:
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step}))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def load_checkpoint(path: Path, model, optimizer) -> int:
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path / "model.safetensors")))
    # Our own file, written above; weights_only refuses anything but tensors and containers.
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    return json.loads((path / "state.json").read_text())["step"]
