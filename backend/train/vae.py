"""Train the `tiny` shape VAE on synthetic bodies (backend.synthetic), on CPU or under torchrun.

    python -m backend.train.vae --out runs/vae_tiny --steps 4000 --seed 0
    torchrun --nproc_per_node 4 -m backend.train.vae --out runs/vae_tiny ...

Resumable: a checkpoint is written every --ckpt-every steps and picked up on restart. The data
cache (deterministic by seed) is built first and reused. At the end the weights are evaluated
on held-out shapes (seeds never used for training) and written with a model card.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..models.configs import VAE_CONFIGS
from ..models.vae import ShapeVAE
from .distributed import init_distributed, shutdown
from .loop import Trainer, load_checkpoint, lr_at

HELDOUT_SEED0 = 10_000_000  # held-out shapes use seeds far from any training seed
SDF_CLAMP = 0.1  # beyond this distance only the sign matters for extraction


def shape_batch(shapes, indices, rng, n_surface: int, n_query: int) -> dict:
    items = [shapes.subsample(int(i), n_surface=n_surface, n_query=n_query, rng=rng) for i in indices]
    return {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in ("surface", "query", "sdf")}


def vae_loss(model, batch, generator, kl_weight: float, sample_posterior: bool = True):
    """Clamped-SDF L1 + a sign term + KL. `model` may be DDP-wrapped: its forward syncs gradients."""
    out = model(batch["surface"], batch["query"], generator=generator, sample_posterior=sample_posterior)
    target = batch["sdf"].clamp(-SDF_CLAMP, SDF_CLAMP)
    recon = (out.sdf.clamp(-SDF_CLAMP, SDF_CLAMP) - target).abs().mean() / SDF_CLAMP
    # The clamp has no gradient outside the band; this keeps wrong-signed far points learning.
    sign = torch.relu(-out.sdf * torch.sign(batch["sdf"])).mean() / SDF_CLAMP
    kl = out.posterior.kl().mean()
    return recon + sign + kl_weight * kl, {"recon": float(recon), "sign": float(sign), "kl": float(kl)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--profile", default="tiny", choices=sorted(VAE_CONFIGS))
    p.add_argument("--data", default="runs/data/shapes")
    p.add_argument("--train-shapes", type=int, default=1500)
    p.add_argument("--heldout-shapes", type=int, default=32)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--surface-points", type=int, default=2048)
    p.add_argument("--query-points", type=int, default=2048)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--kl-weight", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--sample-posterior", type=int, default=1,
                   help="1: decode a sample of the posterior (a VAE); 0: its mean (an autoencoder)")
    p.add_argument("--init-logvar", type=float, default=-6.0,
                   help="initial posterior log-variance (bias of quant's logvar half) for a fresh model")
    p.add_argument("--init-from", default="", help="start from these weights (a shipped folder), e.g. to train longer")
    p.add_argument("--ship", default="", help="copy final weights and model card here (e.g. backend/weights/tiny/vae)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    from ..synthetic.dataset import CachedShapes, build_cache

    d = init_distributed(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    data = Path(args.data)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        info = build_cache(data / "train", "shape", start_seed=0, count=args.train_shapes, workers=2)
        build_cache(data / "heldout", "shape", start_seed=HELDOUT_SEED0, count=args.heldout_shapes, workers=2)
        print(f"data: {info['built']} built, {info['skipped']} cached ({time.time() - t0:.0f} s)", flush=True)
    if d.world > 1:
        torch.distributed.barrier()
    shapes = CachedShapes(data / "train")

    torch.manual_seed(args.seed)
    model = ShapeVAE(**VAE_CONFIGS[args.profile]).to(d.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    if args.init_from:
        model.load_state_dict(ShapeVAE.from_pretrained(args.init_from).state_dict())
    else:
        # A fresh posterior has std ~1: sampled latents are then mostly noise, the decoder learns
        # to ignore them and the KL pulls the means to zero (posterior collapse; seen at 800 steps
        # with KL falling from 4,700 to 15 and held-out IoU 0.1). Start with little noise instead.
        with torch.no_grad():
            model.quant.bias[model.config["latent_channels"]:] = args.init_logvar
    ckpt = out / "checkpoint"
    step = load_checkpoint(ckpt, model, optimizer) if ckpt.exists() else 0
    if step and d.main:
        print(f"resumed at step {step}", flush=True)
    train_model = model
    if d.world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(model)

    trainer = Trainer(model, optimizer, out, main=d.main, total_steps=args.steps, log_every=args.log_every,
                      ckpt_every=args.ckpt_every)
    while step < args.steps:
        # Batches depend only on (seed, step, rank): a resumed run sees the data it would have.
        rng = np.random.default_rng([args.seed, step, d.rank])
        batch = {k: v.to(d.device) for k, v in shape_batch(
            shapes, rng.integers(0, len(shapes), args.batch), rng, args.surface_points, args.query_points).items()}
        generator = torch.Generator(device="cpu").manual_seed(args.seed * 1_000_003 + step * 97 + d.rank)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        loss, parts = vae_loss(train_model, batch, generator, args.kl_weight, bool(args.sample_posterior))
        step = trainer.step(loss, step, parts)

    if d.main:
        final = out / "final"
        model.save_pretrained(final)
        from ..eval.shape import evaluate_vae

        figures = evaluate_vae(model.eval(), CachedShapes(data / "heldout"))
        (out / "heldout.json").write_text(json.dumps(figures, indent=2))
        print("held-out:", json.dumps(figures), flush=True)
        if args.ship:
            ship(final, Path(args.ship), args, figures, trainer.seconds)
    shutdown(d)
    return 0


def ship(final: Path, dest: Path, args, figures: dict, seconds: float) -> None:
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(final / name, dest / name)
    card = {"model": "ShapeVAE", "profile": args.profile, "seed": args.seed, "steps": args.steps,
            "batch": args.batch, "surface_points": args.surface_points, "query_points": args.query_points,
            "lr": args.lr, "kl_weight": args.kl_weight, "train_shapes": args.train_shapes,
            "train_seeds": [0, args.train_shapes - 1], "heldout_seeds": [HELDOUT_SEED0, HELDOUT_SEED0 + args.heldout_shapes - 1],
            "train_seconds": round(seconds), "heldout": figures,
            "command": "python -m backend.train.vae " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in ("", None))}
    # A run started from earlier weights (--init-from) records that run's card, so the chain of
    # commands that reproduces the weights from scratch stays in the file.
    previous = Path(args.init_from) / "training.json" if args.init_from else None
    if previous is not None and previous.is_file():
        prev = json.loads(previous.read_text())
        card["continues_from"] = {k: prev[k] for k in ("command", "steps", "train_seconds", "seed", "heldout",
                                                       "continues_from") if k in prev}
        card["total_steps"] = args.steps + prev.get("total_steps", prev["steps"])
        card["total_train_seconds"] = round(seconds) + prev.get("total_train_seconds", prev["train_seconds"])
    (dest / "training.json").write_text(json.dumps(card, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
