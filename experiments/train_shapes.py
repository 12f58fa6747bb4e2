"""Train the embedded shapes model and its judge from scratch, on a CPU, with a fixed seed.

    python experiments/train_shapes.py            # about 76 minutes on 2 idle CPU cores

Stages (each saved under --work, so a crash resumes where it stopped):
  data   render the training images and captions (prunesched.models.shapes.data)
  vae    train the AutoencoderKL (64 px -> 32x32x4 latents) on reconstruction of 32 px crops, small KL term
  judge  train the shape/colour classifier on the same data, with blur and noise so it reads generated images too
  unet   encode the images once (latents centred inside the VAE), then train the UNet and text encoder
         jointly (epsilon prediction, SD 1.5's noise schedule, offset noise 0.1, min-SNR-5 weighting,
         10 % empty captions for guidance, bf16 autocast, EMA weights)
  ship   write the diffusers folder and the judge into the package, the loss curves to --log and --plot

Its output at these defaults, written to prunesched/models/shapes/weights, is what the package
ships (docs/shapes-model.md).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prunesched.models.shapes import JUDGE_FILE, MODEL_DIR, architecture
from prunesched.models.shapes.data import sample
from prunesched.models.shapes.judge import HEADS, Judge, labels

ROOT = Path(__file__).resolve().parent


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40_000, help="training images rendered once")
    parser.add_argument("--vae-steps", type=int, default=800)
    parser.add_argument("--judge-steps", type=int, default=800)
    parser.add_argument("--unet-steps", type=int, default=3800)
    parser.add_argument("--unet-lr", type=float, default=1e-3)
    parser.add_argument(
        "--batch",
        type=int,
        default=32,
        help="UNet batch; at equal compute, 32 x 2,400 steps ended at a lower loss than 64 x 1,300 (0.027 vs 0.034, on eight-colour data)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / ".work" / "shapes", help="checkpoints and the rendered data")
    parser.add_argument("--out", type=Path, default=MODEL_DIR.parent, help="where the pipeline folder and judge go")
    parser.add_argument("--log", type=Path, default=ROOT / "results" / "train_shapes.json")
    parser.add_argument("--plot", type=Path, default=ROOT.parent / "docs" / "images" / "shapes-training.png")
    return parser.parse_args()


def render(count: int, seed: int) -> tuple[torch.Tensor, list[str], dict[str, torch.Tensor]]:
    """``count`` training images as uint8 (N, 3, 64, 64), their captions, and the judge's labels."""
    with multiprocessing.Pool(2) as pool:
        samples = pool.starmap(sample, [(i, "train", 64, seed) for i in range(count)], chunksize=256)
    images = torch.from_numpy(np.stack([np.asarray(image) for image, _ in samples])).permute(0, 3, 1, 2).contiguous()
    captions = [scene.caption for _, scene in samples]
    targets = {head: torch.tensor([labels(scene)[head] for _, scene in samples]) for head in HEADS}
    return images, captions, targets


def rendered(args: argparse.Namespace) -> tuple[torch.Tensor, list[str], dict[str, torch.Tensor]]:
    """The training images, captions and labels: rendered once into ``args.work``, read back on a resumed run."""
    began, data = time.perf_counter(), args.work / "data.pt"
    if not data.exists():
        torch.save(render(args.images, args.seed), data)
    images, captions, targets = torch.load(data, weights_only=False)
    print(f"[data] {len(images)} images, {time.perf_counter() - began:.0f}s", flush=True)
    return images, captions, targets


def as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1


def train(
    name: str,
    params: list[torch.nn.Parameter],
    steps: int,
    lr: float,
    step: Callable[[int], torch.Tensor],
    work: Path,
    modules: dict[str, torch.nn.Module],
    generator: torch.Generator,
    on_step: Callable[[int], None] = lambda i: None,
) -> list[dict[str, float]]:
    """AdamW with warm-up and cosine decay over ``steps`` calls of ``step`` (which returns the loss).

    Resumable, and a resumed run equals an uninterrupted one: the checkpoint holds the batch
    ``generator``'s state along with the weights and the optimiser.
    """
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min(1.0, (i + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * i / steps)))
    )
    checkpoint = work / f"{name}.pt"
    start, curve = 0, []
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        for key, module in modules.items():
            module.load_state_dict(state[key])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, curve = state["step"], state["curve"]
        if start < steps:  # a finished stage draws no more batches
            generator.set_state(state["generator"])
        print(f"[{name}] resuming at step {start}")
    began, window = time.perf_counter() - (curve[-1]["seconds"] if curve else 0.0), []
    for i in range(start, steps):
        loss = step(i)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        on_step(i)
        window.append(loss.item())
        if (i + 1) % 25 == 0 or i + 1 == steps:
            curve.append({"step": i + 1, "loss": float(np.mean(window)), "seconds": time.perf_counter() - began})
            window = []
            print(f"[{name}] step {i + 1}/{steps} loss {curve[-1]['loss']:.4f} {curve[-1]['seconds']:.0f}s", flush=True)
        if (i + 1) % 250 == 0 or i + 1 == steps:
            state = {key: module.state_dict() for key, module in modules.items()}
            state |= {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "generator": generator.get_state()}
            state |= {"step": i + 1, "curve": curve}
            torch.save(state, checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)
    return curve


def train_vae(images: torch.Tensor, args: argparse.Namespace) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    torch.manual_seed(args.seed)
    vae = architecture.vae()
    generator = torch.Generator().manual_seed(args.seed + 1)

    def step(_: int) -> torch.Tensor:  # on random 32-pixel crops: the VAE is convolutional, and crops cost a quarter
        top, left = torch.randint(33, (2,), generator=generator).tolist()
        x = as_float(images[torch.randint(len(images), (32,), generator=generator), :, top : top + 32, left : left + 32])
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        recon = vae.decode(z).sample
        return F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x) + 1e-6 * posterior.kl().mean()

    curve = train("vae", list(vae.parameters()), args.vae_steps, 5e-4, step, args.work, {"vae": vae}, generator)
    return vae.eval(), curve


def train_judge(images: torch.Tensor, targets: dict[str, torch.Tensor], args: argparse.Namespace) -> tuple[Judge, list]:
    torch.manual_seed(args.seed)
    judge = Judge()
    generator = torch.Generator().manual_seed(args.seed + 2)

    def step(_: int) -> torch.Tensor:
        index = torch.randint(len(images), (128,), generator=generator)
        x = images[index].float() / 255
        sigma = float(torch.rand((), generator=generator)) * 1.2
        if sigma > 0.3:  # generated images are softer and noisier than rendered ones
            x = gaussian_blur(x, sigma)
        x = (x + torch.randn(x.shape, generator=generator) * float(torch.rand((), generator=generator)) * 0.06).clamp(0, 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # nearly twice as fast on this CPU's bf16 units
            logits = {head: out.float() for head, out in judge(x).items()}
        return sum(F.cross_entropy(logits[head], targets[head][index]) for head in HEADS)

    curve = train("judge", list(judge.parameters()), args.judge_steps, 2e-3, step, args.work, {"judge": judge}, generator)
    return judge.eval(), curve


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(2 * sigma))
    kernel = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).repeat(3, 1, 1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(3, 1, 1, -1), groups=3)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(3, 1, -1, 1), groups=3)


@torch.no_grad()
def center(vae: torch.nn.Module, mean: torch.Tensor) -> None:
    """Shift the VAE's latent space by ``-mean`` inside its own 1x1 convolutions, so its latents have zero mean.

    SD 1.5's pipeline starts sampling from zero-mean noise and only divides latents by a scaling
    factor; with off-centre latents the UNet learns to read the image's colour from the faint
    mean left in its most noisy inputs, and every sample comes out in the colour of zero.
    """
    vae.quant_conv.bias[: len(mean)] -= mean  # the posterior mean's channels come first
    vae.post_quant_conv.bias += vae.post_quant_conv.weight[:, :, 0, 0] @ mean


@torch.no_grad()
def encode(vae: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16):  # 40,000 images: minutes saved for the UNet
        chunks = [vae.encode(as_float(images[i : i + 256])).latent_dist.mode().float() for i in range(0, len(images), 256)]
    return torch.cat(chunks)


def train_unet(vae, images: torch.Tensor, captions: list[str], args: argparse.Namespace):
    """Returns the EMA UNet, the EMA text encoder, the tokenizer, the latent scaling factor, and the loss curve."""
    cached = args.work / "latents.pt"
    if not cached.exists():  # encoding takes minutes; a resumed run reads it back
        torch.save(encode(vae, images), cached)
    latents = torch.load(cached)
    mean = latents.mean(dim=(0, 2, 3))
    center(vae, mean)
    latents = latents - mean.view(1, -1, 1, 1)
    scaling = 1.0 / float(latents.std())
    latents = latents * scaling
    tokenizer = architecture.tokenizer(args.work / "tokenizer")
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    torch.manual_seed(args.seed)
    unet, text = architecture.unet(), architecture.text_encoder(len(tokenizer))
    ema_unet, ema_text = architecture.unet(), architecture.text_encoder(len(tokenizer))
    ema_unet.load_state_dict(unet.state_dict())
    ema_text.load_state_dict(text.state_dict())
    alphas = architecture.scheduler().alphas_cumprod
    generator = torch.Generator().manual_seed(args.seed + 3)

    def step(_: int) -> torch.Tensor:
        index = torch.randint(len(latents), (args.batch,), generator=generator)
        tokens = ids[index].clone()
        tokens[torch.rand(args.batch, generator=generator) < 0.1] = empty[0]
        t = torch.randint(len(alphas), (args.batch,), generator=generator)
        noise = torch.randn(latents[index].shape, generator=generator)
        noise += 0.1 * torch.randn(args.batch, 4, 1, 1, generator=generator)  # offset noise: take colour from the text
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents[index] + (1 - a).sqrt() * noise
        with torch.autocast("cpu", dtype=torch.bfloat16):  # about a fifth faster on CPUs with bf16 units; weights stay fp32
            predicted = unet(noisy, t, text(tokens).last_hidden_state).sample.float()
        snr = alphas[t] / (1 - alphas[t])
        weight = torch.clamp(snr, max=5.0) / snr
        return (weight * F.mse_loss(predicted, noise, reduction="none").mean(dim=(1, 2, 3))).mean()

    @torch.no_grad()
    def update_ema(i: int) -> None:
        decay = min(0.999, (2 + i) / (11 + i))
        for ema, live in ((ema_unet, unet), (ema_text, text)):
            for e, p in zip(ema.parameters(), live.parameters()):
                e.lerp_(p, 1 - decay)

    modules = {"unet": unet, "text": text, "ema_unet": ema_unet, "ema_text": ema_text}
    params = list(unet.parameters()) + list(text.parameters())
    curve = train("unet", params, args.unet_steps, args.unet_lr, step, args.work, modules, generator, update_ema)
    return ema_unet.eval(), ema_text.eval(), tokenizer, scaling, curve


def ship(vae, unet, text, tokenizer, scaling: float, judge: Judge, out: Path) -> None:
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    vae.register_to_config(scaling_factor=scaling)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=architecture.scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out / "pipeline", safe_serialization=True)
    save_file({k: v.contiguous() for k, v in judge.state_dict().items()}, str(out / JUDGE_FILE.name))


def main() -> None:
    args = parse()
    torch.set_num_threads(2)
    args.work.mkdir(parents=True, exist_ok=True)
    began, cpu_began = time.perf_counter(), cpu_seconds()
    images, captions, targets = rendered(args)
    laps = [("data", time.perf_counter())]
    vae, vae_curve = train_vae(images, args)
    laps.append(("vae", time.perf_counter()))
    judge, judge_curve = train_judge(images, targets, args)
    laps.append(("judge", time.perf_counter()))
    unet, text, tokenizer, scaling, unet_curve = train_unet(vae, images, captions, args)
    laps.append(("encode + unet", time.perf_counter()))
    ship(vae, unet, text, tokenizer, scaling, judge, args.out)
    laps.append(("ship", time.perf_counter()))
    stages = {name: end - start for (name, end), (_, start) in zip(laps, [("", began), *laps])}
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("work", "out", "log", "plot")}
    log = {
        "settings": settings,
        "scaling_factor": scaling,
        "wall_s": time.perf_counter() - began,
        "stage_wall_s": stages,
        "cpu_s": cpu_seconds() - cpu_began,
        "threads": torch.get_num_threads(),
        "curves": {"vae": vae_curve, "judge": judge_curve, "unet": unet_curve},
    }
    args.log.parent.mkdir(parents=True, exist_ok=True)
    args.log.write_text(json.dumps(log, indent=1))
    plot_curves(log["curves"], args.plot)
    print(f"shipped to {args.out} in {log['wall_s'] / 60:.1f} min ({log['cpu_s'] / 60:.1f} CPU-minutes)", flush=True)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children: on a shared machine, wall time also counts other tenants' load."""
    return sum(os.times()[:4])


def plot_curves(curves: dict[str, list[dict[str, float]]], path: Path) -> None:
    """The loss curves of the trained stages side by side, each titled with its wall time (the model card's figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
    for ax, (stage, curve) in zip(axes[0], curves.items()):
        ax.plot([c["step"] for c in curve], [c["loss"] for c in curve])
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (mean of 25 steps)")
        ax.set_title(f"{stage}: {curve[-1]['seconds'] / 60:.1f} min")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
