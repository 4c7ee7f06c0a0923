"""Train the `tiny` temporal autoencoder (Stage II) on synthetic animated bodies, on CPU or torchrun.

    python -m backend.train.stage2 --out runs/stage2_tiny --vae backend/weights/tiny/vae \\
        --ship backend/weights/tiny/stage2
    torchrun --nproc_per_node 4 -m backend.train.stage2 --out runs/stage2_tiny ...

The shape VAE is frozen, so its latents are computed once: every frame's own mesh (each frame has
its own topology) is sampled into surface points + normals and encoded (`encode(...).mode()`)
--encodings times with different samples and token choices, and the result is cached in
OUT/latents.npz (rebuilt when the VAE or the settings change). Each step, per sequence of the
batch: a window of --frames consecutive frames, one cached encoding per frame drawn at random;
the queries are --queries tracked material points at a random source frame of the window
(xyz + normal), the targets are the same points' xyz at --targets random frames of the window;
times are normalised window time (frame offset / (frames - 1)), as the official model expects.
Loss: L1 (or L2) on positions. (Encoding on the fly instead made a step 2.4x slower per sequence
on 2 cores.)

Resumable (a checkpoint every --ckpt-every steps, picked up on restart), seeded (batches depend
only on seed, step and rank), data cache built once and reused. At the end the model tracks the
points of held-out sequences (seeds never trained on) from frame 0 through every frame with the
sliding-window decoder and reports the mean distance to their true positions.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..models.configs import file_sha256
from ..models.temporal_autoencoder import TemporalAutoencoder, count_parameters
from ..models.temporal_configs import AUTOENCODER_CONFIGS
from .distributed import init_distributed, shutdown
from .loop import Trainer
from .loop import load_checkpoint, lr_at
from .vae import HELDOUT_SEED0

DEFAULT_VAE = "backend/weights/tiny/vae"


# ---------------------------------------------------------------- data


def surface_samples(seq: dict, frames, n_points: int, rng) -> np.ndarray:
    """[len(frames), n_points, 6] surface points + normals, each frame sampled from its own mesh."""
    from ..geometry.sampling import sample_surface

    out = []
    for f in frames:
        p, n = sample_surface(seq["vertices"][f], seq["faces"][f], n_points, seed=rng)
        out.append(np.concatenate([p, n], -1))
    return np.stack(out).astype(np.float32)


def encode_sequences(vae, sequences, *, encodings: int, num_latents: int, surface_points: int, seed: int,
                     log=print) -> dict:
    """Frozen-VAE latents of every frame of every sequence, `encodings` times each.

    Returns {"latents": [S, T, E, M, C], "anchors": [S, T, E, M, 3] (where each token was
    encoded), "tracked": [S, T, N, 6]}, float32; all sequences must have the same frame and
    tracked-point counts (the generator's are fixed).
    """
    latents, anchors, tracked = [], [], []
    t0 = time.time()
    with torch.no_grad():
        for i in range(len(sequences)):
            seq = sequences[i]
            frames = len(seq["vertices"])
            rng = np.random.default_rng([seed, int(seq["seed"])])
            surface = surface_samples(seq, [f for f in range(frames) for _ in range(encodings)], surface_points, rng)
            gen = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + int(seq["seed"]))
            z, at = (x[0] for x in encode_frames(vae, torch.from_numpy(surface)[None], num_latents, generator=gen))
            latents.append(z.reshape(frames, encodings, *z.shape[1:]).numpy())
            anchors.append(at.reshape(frames, encodings, *at.shape[1:]).numpy())
            tracked.append(seq["tracked"])
            if log is not None and (i + 1) % 50 == 0:
                log(f"encoded {i + 1}/{len(sequences)} sequences ({time.time() - t0:.0f} s)")
    return {"latents": np.stack(latents), "anchors": np.stack(anchors), "tracked": np.stack(tracked)}


def cached_latents(path: Path, vae_dir: Path, sequences, **settings) -> dict:
    """encode_sequences, cached at `path` and reused while the VAE weights and settings match."""
    key = {"format": 2, "vae_sha256": file_sha256(vae_dir / "model.safetensors"), "sequences": len(sequences),
           **settings}
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if "key" in z.files and json.loads(str(z["key"])) == key:
                return {k: z[k] for k in ("latents", "anchors", "tracked")}
    data = encode_sequences(load_frozen_vae(vae_dir, "cpu"), sequences, **settings)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, key=np.array(json.dumps(key)), **data)
    tmp.replace(path)
    return data


def sequence_batch(cache: dict, indices, rng, n_frames: int, n_queries: int, n_targets: int) -> dict:
    """One training batch from cached latents (numpy -> torch). Times are normalised window time."""
    items = {k: [] for k in ("latents", "anchors", "queries", "source_time", "target_times", "targets",
                             "frame_index")}
    t_all, encodings = cache["latents"].shape[1:3]
    f = min(n_frames, t_all)
    span = max(f - 1, 1)
    for i in indices:
        tracked = cache["tracked"][int(i)]  # [T, N, 6]
        start = int(rng.integers(0, t_all - f + 1))
        frames = np.arange(start, start + f)
        src = int(rng.integers(0, f))
        tgt = np.sort(rng.choice(f, size=min(n_targets, f), replace=False))
        pts = rng.choice(tracked.shape[1], size=n_queries, replace=n_queries > tracked.shape[1])
        pick = rng.integers(0, encodings, f)
        items["latents"].append(cache["latents"][int(i), frames, pick])
        items["anchors"].append(cache["anchors"][int(i), frames, pick])
        items["queries"].append(tracked[start + src, pts])
        items["source_time"].append(np.float32(src / span))
        items["target_times"].append((tgt / span).astype(np.float32))
        items["targets"].append(tracked[start + tgt][:, pts, :3])
        items["frame_index"].append(frames)
    return {k: torch.from_numpy(np.stack(v)) for k, v in items.items()}


@torch.no_grad()
def encode_frames(vae, surface: torch.Tensor, num_latents: int, generator=None):
    """surface [B, F, N, 6] -> latents [B, F, M, C] (posterior mode) and anchors [B, F, M, 3]."""
    b, f = surface.shape[:2]
    posterior, anchors = vae.encode_tokens(surface.flatten(0, 1), generator=generator, num_latents=num_latents)
    return posterior.mode().unflatten(0, (b, f)), anchors.unflatten(0, (b, f))


def position_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    return (pred - target).abs().mean() if kind == "l1" else (pred - target).pow(2).mean()


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_stage2(model, vae, sequences, *, num_latents: int, surface_points: int, queries: int,
                    window: int = 16, seed: int = 0, device="cpu") -> dict:
    """Track `queries` material points from frame 0 through each held-out sequence (sliding windows,
    as at inference) and compare with their true positions.

    Figures (lower is better), in the normalised [-1, 1] box and divided by the frame-0 bounding-box
    diagonal of the tracked points: the model's mean point error over frames 1..T-1, and the
    "static" baseline (points left where they were at frame 0).
    """
    model.eval()
    per_seq, errs, static, rel = [], [], [], []
    for i in range(len(sequences)):
        seq = sequences[i]
        rng = np.random.default_rng([seed, i])
        tracked = seq["tracked"]
        t = tracked.shape[0]
        pts = rng.choice(tracked.shape[1], size=min(queries, tracked.shape[1]), replace=False)
        surface = torch.from_numpy(surface_samples(seq, range(t), surface_points, rng))[None].to(device)
        gen = torch.Generator(device="cpu").manual_seed(seed * 7919 + i)
        latents, anchors = (x[0] for x in encode_frames(vae, surface, num_latents, generator=gen))
        q = torch.from_numpy(tracked[0, pts]).to(device)
        truth = torch.from_numpy(tracked[:, pts, :3]).to(device)
        pred = model.predict_sequence(latents, q, window=window, anchors=anchors)
        err = (pred[1:] - truth[1:]).norm(dim=-1).mean().item()
        still = (truth[0][None] - truth[1:]).norm(dim=-1).mean().item()
        diag = float(np.linalg.norm(tracked[0, :, :3].max(0) - tracked[0, :, :3].min(0)))
        errs.append(err)
        static.append(still)
        rel.append(err / diag)
        per_seq.append({"seed": int(seq["seed"]), "archetype": str(seq["archetype"]), "frames": int(t),
                        "mean_point_error": round(err, 5), "static_error": round(still, 5),
                        "relative_to_diagonal": round(err / diag, 5)})
    return {
        "sequences": len(sequences),
        "queries_per_sequence": int(queries),
        "mean_point_error": float(np.mean(errs)) if errs else None,
        "mean_point_error_relative_to_diagonal": float(np.mean(rel)) if rel else None,
        "static_baseline_error": float(np.mean(static)) if static else None,
        "per_sequence": per_seq,
    }


# ---------------------------------------------------------------- main


def load_frozen_vae(path: Path, device):
    from ..models.vae import ShapeVAE

    vae = ShapeVAE.from_pretrained(path, device=device)
    vae.requires_grad_(False)
    return vae.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--profile", default="tiny", choices=sorted(AUTOENCODER_CONFIGS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override one config value of the profile, e.g. --set readout_locality=true (repeatable; "
                        "the shipped config.json records the result)")
    p.add_argument("--vae", default=DEFAULT_VAE, help="frozen shape VAE folder (config.json + model.safetensors)")
    p.add_argument("--data", default="runs/data/sequences")
    p.add_argument("--train-sequences", type=int, default=400)
    p.add_argument("--heldout-sequences", type=int, default=8)
    p.add_argument("--mesh-resolution", type=int, default=96, help="marching-cubes grid of the cached frames")
    p.add_argument("--cache-workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--frames", type=int, default=16, help="window length (the model's temporal context)")
    p.add_argument("--num-latents", type=int, default=32,
                   help="latent tokens per frame (VAE encode); inference must use the same count")
    p.add_argument("--surface-points", type=int, default=2048, help="surface samples per frame for the VAE")
    p.add_argument("--encodings", type=int, default=4,
                   help="cached VAE encodings per frame (different surface samples and token choices)")
    p.add_argument("--queries", type=int, default=512, help="tracked points per sequence per step")
    p.add_argument("--targets", type=int, default=2, help="target frames per sequence per step")
    p.add_argument("--loss", default="l1", choices=("l1", "l2"))
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-queries", type=int, default=1024)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--ship", default="", help="copy final weights and model card here (e.g. backend/weights/tiny/stage2)")
    args = p.parse_args(argv)

    config = dict(AUTOENCODER_CONFIGS[args.profile])
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in inspect.signature(TemporalAutoencoder.__init__).parameters or key == "self":
            print(f"error: --set {item}: {key!r} is not a TemporalAutoencoder setting", file=sys.stderr)
            return 2
        try:
            config[key] = json.loads(value)
        except ValueError:
            print(f"error: --set {item}: the value must be JSON (true, 16.0, \"per_frame\")", file=sys.stderr)
            return 2
    vae_dir = Path(args.vae)
    if not (vae_dir / "config.json").is_file():
        print(f"error: no trained shape VAE at {vae_dir} (config.json + model.safetensors expected).\n"
              f"Train it first (python -m backend.train.vae --ship {DEFAULT_VAE} ...) or pass --vae DIR.",
              file=sys.stderr)
        return 2

    from ..synthetic.dataset import CachedShapes, build_cache

    d = init_distributed(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    data = Path(args.data)
    cache_kwargs = dict(mesh_resolution=args.mesh_resolution)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        info = build_cache(data / "train", "sequence", start_seed=0, count=args.train_sequences,
                           workers=args.cache_workers, **cache_kwargs)
        build_cache(data / "heldout", "sequence", start_seed=HELDOUT_SEED0, count=args.heldout_sequences,
                    workers=args.cache_workers, **cache_kwargs)
        print(f"data: {info['built']} built, {info['skipped']} cached ({time.time() - t0:.0f} s)", flush=True)
    if d.world > 1:
        torch.distributed.barrier()
    sequences = CachedShapes(data / "train", kind="sequence")
    # Only the seeds asked for: the folder may hold more from another run.
    sequences.paths = sequences.paths[: args.train_sequences]

    vae = load_frozen_vae(vae_dir, d.device)
    if vae.config["latent_channels"] != config["latent_channels"]:
        print(f"error: the VAE at {vae_dir} makes {vae.config['latent_channels']}-channel latents but the "
              f"{args.profile!r} autoencoder expects {config['latent_channels']}", file=sys.stderr)
        return 2
    encode = dict(encodings=args.encodings, num_latents=args.num_latents, surface_points=args.surface_points,
                  seed=args.seed)
    if d.main:
        t0 = time.time()
        cache = cached_latents(out / "latents.npz", vae_dir, sequences, **encode)
        print(f"latents: {cache['latents'].shape} ({time.time() - t0:.0f} s)", flush=True)
    if d.world > 1:
        torch.distributed.barrier()
        if not d.main:
            cache = cached_latents(out / "latents.npz", vae_dir, sequences, **encode)

    torch.manual_seed(args.seed)
    model = TemporalAutoencoder(**config).to(d.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    ckpt = out / "checkpoint"
    step = load_checkpoint(ckpt, model, optimizer) if ckpt.exists() else 0
    if d.main:
        print(f"{args.profile} autoencoder: {count_parameters(model):,} parameters"
              + (f"; resumed at step {step}" if step else ""), flush=True)
    train_model = model
    if d.world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(model)

    trainer = Trainer(model, optimizer, out, main=d.main, total_steps=args.steps, log_every=args.log_every,
                      ckpt_every=args.ckpt_every)
    model.train()
    while step < args.steps:
        # Batches depend only on (seed, step, rank): a resumed run sees the data it would have.
        rng = np.random.default_rng([args.seed, step, d.rank])
        batch = {k: v.to(d.device) for k, v in sequence_batch(
            cache, rng.integers(0, len(cache["latents"]), args.batch), rng, args.frames, args.queries,
            args.targets).items()}
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        pred = train_model(batch["latents"], batch["queries"], batch["source_time"], batch["target_times"],
                           frame_index=batch["frame_index"], anchors=batch["anchors"])
        loss = position_loss(pred, batch["targets"], args.loss)
        err = (pred.detach() - batch["targets"]).norm(dim=-1).mean().item()
        # The error of leaving the points where they are: the figure to beat.
        still = (batch["queries"][:, None, :, :3] - batch["targets"]).norm(dim=-1).mean().item()
        step = trainer.step(loss, step, {"point_error": err, "static_error": still})

    if d.main:
        final = out / "final"
        model.save_pretrained(final)
        figures = evaluate_stage2(model.eval(), vae, CachedShapes(data / "heldout", kind="sequence"),
                                  num_latents=args.num_latents, surface_points=args.surface_points,
                                  queries=args.eval_queries, window=config["temporal_context_size"],
                                  seed=args.seed, device=d.device)
        (out / "heldout.json").write_text(json.dumps(figures, indent=2))
        print("held-out:", json.dumps({k: v for k, v in figures.items() if k != "per_sequence"}), flush=True)
        if args.ship:
            ship(final, Path(args.ship), args, figures, logged_seconds(out / "log.jsonl"), count_parameters(model))
    shutdown(d)
    return 0


def logged_seconds(log: Path) -> float:
    """Training time over every run that wrote `log` (each restart begins its "elapsed" at 0)."""
    total, last = 0.0, 0.0
    for line in log.read_text().splitlines() if log.is_file() else []:
        elapsed = json.loads(line)["elapsed"]
        if elapsed < last:  # a resumed run
            total += last
        last = elapsed
    return total + last


def ship(final: Path, dest: Path, args, figures: dict, seconds: float, parameters: int) -> None:
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(final / name, dest / name)
    vae_weights = Path(args.vae) / "model.safetensors"
    card = {
        "model": "TemporalAutoencoder", "profile": args.profile, "parameters": parameters,
        "task": "Stage II: positions of surface points given at a source time, at target times, from per-frame "
                "shape-VAE latents (normalised window time in [0, 1], windows of 16 sliding by 15)",
        "vae": str(args.vae), "vae_sha256": file_sha256(vae_weights) if vae_weights.is_file() else None,
        "seed": args.seed, "steps": args.steps, "batch": args.batch, "frames": args.frames,
        "num_latents": args.num_latents, "surface_points": args.surface_points, "encodings": args.encodings,
        "queries": args.queries,
        "targets": args.targets, "loss": args.loss, "lr": args.lr, "mesh_resolution": args.mesh_resolution,
        "train_sequences": args.train_sequences, "train_seeds": [0, args.train_sequences - 1],
        "heldout_seeds": [HELDOUT_SEED0, HELDOUT_SEED0 + args.heldout_sequences - 1],
        "train_seconds": round(seconds),
        "heldout": figures,
        "heldout_note": "mean distance between predicted and true positions of tracked material points over "
                        "frames 1..T-1, starting from their frame-0 positions, in the normalised [-1, 1] box; "
                        "static_baseline_error = the same for points that do not move",
        "command": "python -m backend.train.stage2 " + " ".join(
            f"--{k.replace('_', '-')} {item}" for k, v in vars(args).items() if v not in ("", None, [])
            for item in (v if isinstance(v, list) else [v])),
    }
    (dest / "training.json").write_text(json.dumps(card, indent=2))
    (dest / "README.md").write_text(render_readme(card))


def render_readme(card: dict) -> str:
    """The model card for people; training.json is the same for the tests."""
    h = card["heldout"]
    ratio = h["mean_point_error"] / h["static_baseline_error"]
    lines = [
        f"# {card['model']} `{card['profile']}` weights (Stage II)",
        "",
        "Our own weights, trained from scratch on procedurally generated animated bodies",
        "(`backend/synthetic/`), no external data. Licence: GPL-3.0-or-later, like the code.",
        f"They read the latents of the shape VAE whose weights have sha256 `{card['vae_sha256']}`",
        "(`backend/weights/tiny/vae`): retrain this model whenever that one changes.",
        "",
        "## Training",
        f"- command: `{card['command']}`",
        f"- steps: {card['steps']}, batch {card['batch']} windows of {card['frames']} frames, {card['queries']} "
        f"tracked points x {card['targets']} target frames each, lr {card['lr']}, seed {card['seed']}",
        f"- data: {card['train_sequences']} synthetic sequences (seeds {card['train_seeds'][0]}-{card['train_seeds'][1]}),"
        f" {card['num_latents']} latent tokens per frame from {card['surface_points']} surface points, "
        f"{card['encodings']} cached encodings per frame",
        f"- time: {card['train_seconds'] / 60:.0f} min on 2 CPU cores",
        "",
        "## Held-out quality",
        f"{h['sequences']} sequences never seen in training (seeds {card['heldout_seeds'][0]}-{card['heldout_seeds'][1]}):"
        f" {h['queries_per_sequence']} material points tracked from frame 0 through every frame, in the [-1, 1] box.",
        "",
        "| | mean point error |",
        "|---|---|",
        f"| this model | {h['mean_point_error']:.4f} |",
        f"| leaving the points where they are | {h['static_baseline_error']:.4f} |",
        "",
        f"The model's error is {ratio:.2f}x that of not moving the points: it captures part of the motion, "
        "coarsely. `register --method learned-optimize` refines its guesses with the optimisation; alone (`learned`) it is "
        "a fast, rough first pass.",
        "",
        "`tests/test_shipped_weights.py` checks these figures against the shipped file.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
