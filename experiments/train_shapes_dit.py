"""Train the embedded shapes DiT (SD3's MMDiT) from scratch, on a CPU, with a fixed seed.

    python experiments/train_shapes_dit.py        # about 88 minutes on 2 idle CPU cores

It reuses the shapes model's data, VAE, tokenizer and judge (docs/shapes-dit.md). Stages, each
saved under --work so a crash resumes where it stopped:
  data   render the training images and captions (the UNet's data, same seed)
  dit    encode the images once with the shipped VAE, then train the transformer and its two CLIP
         encoders (warm-started from the UNet's text encoder) jointly: rectified flow (velocity
         prediction, logit-normal timesteps, as SD3), 10 % empty captions for guidance, fp32
         under torch.compile, EMA weights
  ship   write the diffusers folder into the package, the loss curve to --log and --plot

SD3's pipeline gives the transformer 256 context tokens of zeros where T5 would be (this model
has no T5). They are identical, so training replaces them with one zero token whose attention
logit is raised by log(256): exactly the same function, at a third of the context cost
(``ZeroTokens``; checked against the pipeline's own encoding before training starts).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from train_shapes import cpu_seconds, encode, plot_curves, rendered, train

from prunesched.models.shapes import DIT_DIR, MODEL_DIR, architecture

ROOT = Path(__file__).resolve().parent
ZERO_TOKENS = 256
"""T5 positions SD3's pipeline fills with zeros when it has no T5 (its ``max_sequence_length`` default)."""


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40_000, help="training images rendered once")
    parser.add_argument("--steps", type=int, default=22_000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / ".work" / "shapes-dit", help="checkpoints and the rendered data")
    parser.add_argument("--out", type=Path, default=DIT_DIR, help="where the pipeline folder goes")
    parser.add_argument("--log", type=Path, default=ROOT / "results" / "train_shapes_dit.json")
    parser.add_argument("--plot", type=Path, default=ROOT.parent / "docs" / "images" / "shapes-dit-training.png")
    return parser.parse_args()


class ZeroTokens:
    """SD3's joint attention for a context whose last token stands for ``count`` identical zero tokens.

    Identical keys with identical values act in softmax as one key whose logit is raised by
    log(count), and identical queries get identical outputs: so one token computes what
    ``count`` would. Used in training only; the shipped model runs the standard processor.
    """

    def __init__(self, count: int) -> None:
        self.bias = math.log(count)

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, attention_mask=None, **_):
        batch, image_tokens = hidden_states.shape[:2]

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        q, k, v = heads(attn.to_q(hidden_states)), heads(attn.to_k(hidden_states)), heads(attn.to_v(hidden_states))
        cq, ck, cv = (heads(proj(encoder_hidden_states)) for proj in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
        if attn.norm_q is not None:
            q, k = attn.norm_q(q), attn.norm_k(k)
        if attn.norm_added_q is not None:
            cq, ck = attn.norm_added_q(cq), attn.norm_added_k(ck)
        q, k, v = torch.cat([q, cq], dim=2), torch.cat([k, ck], dim=2), torch.cat([v, cv], dim=2)
        mask = torch.zeros(k.shape[2], dtype=q.dtype, device=q.device)
        mask[-1] = self.bias
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.view(1, 1, 1, -1))
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * q.shape[-1]).to(q.dtype)
        image, context = out[:, :image_tokens], out[:, image_tokens:]
        if not attn.context_pre_only:
            context = attn.to_add_out(context)
        return attn.to_out[1](attn.to_out[0](image)), context


def prompt_embeddings(encoders, ids: torch.Tensor, zero_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What SD3's ``encode_prompt`` gives for token ids without a T5: both CLIPs' penultimate states side by side,
    ``zero_tokens`` zero tokens after them, and both pooled projections side by side."""
    outputs = [encoder(ids, output_hidden_states=True) for encoder in encoders]
    clip = torch.cat([out.hidden_states[-2] for out in outputs], dim=-1)
    context = torch.cat([clip, clip.new_zeros(len(ids), zero_tokens, clip.shape[-1])], dim=1)
    return context, torch.cat([out.text_embeds for out in outputs], dim=-1)


@torch.no_grad()
def check_zero_tokens(transformer, encoders, tokenizer) -> float:
    """The largest difference between the training shortcut and SD3's pipeline on a few captions; raises if not exact."""
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline(
        transformer, architecture.dit_scheduler(), None, encoders[0], tokenizer, encoders[1], tokenizer, None, None
    )
    captions = [
        "a large red circle on a striped blue background",
        "a small green triangle above a white square on a dotted black background",
    ]
    expected, _, pooled, _ = pipe.encode_prompt(captions, None, None, do_classifier_free_guidance=False, device=torch.device("cpu"))
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    context, ours = prompt_embeddings(encoders, ids, ZERO_TOKENS)
    assert torch.equal(context, expected) and torch.equal(ours, pooled), "prompt_embeddings differs from SD3's encode_prompt"
    latents, t = torch.randn(2, 4, 32, 32), torch.tensor([300.0, 900.0])
    full = transformer(latents, expected, pooled, t).sample
    processors = transformer.attn_processors
    transformer.set_attn_processor(ZeroTokens(ZERO_TOKENS))
    short = transformer(latents, prompt_embeddings(encoders, ids, 1)[0], pooled, t).sample
    transformer.set_attn_processor(processors)
    error = float((full - short).abs().max())
    assert error < 1e-4 * float(full.abs().max()), f"the one-token shortcut is off by {error}"
    return error


def train_dit(vae, images: torch.Tensor, captions: list[str], args: argparse.Namespace):
    """Returns the EMA transformer, the two EMA text encoders, the tokenizer, the check's error and the loss curve."""
    cached = args.work / "latents.pt"
    if not cached.exists():
        torch.save(encode(vae, images), cached)
    latents = torch.load(cached) * vae.config.scaling_factor  # the shipped VAE's latents are already centred
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(MODEL_DIR / "tokenizer")
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    unet_text = CLIPTextModel.from_pretrained(MODEL_DIR / "text_encoder").state_dict()
    torch.manual_seed(args.seed)
    transformer, ema = architecture.dit(), architecture.dit()
    ema.load_state_dict(transformer.state_dict())
    texts, ema_texts = [], []
    for _ in range(2):  # warm-started: the UNet's encoder already tells the captions apart; projections start random
        text = architecture.dit_text_encoder(len(tokenizer))
        text.load_state_dict(unet_text, strict=False)
        texts.append(text)
        ema_texts.append(architecture.dit_text_encoder(len(tokenizer)))
        ema_texts[-1].load_state_dict(text.state_dict())
    error = check_zero_tokens(transformer, texts, tokenizer)
    print(f"[dit] one zero token with log({ZERO_TOKENS}) matches the pipeline's {ZERO_TOKENS} to {error:.1e}", flush=True)
    transformer.set_attn_processor(ZeroTokens(ZERO_TOKENS))
    generator = torch.Generator().manual_seed(args.seed + 4)

    # Compiled in fp32: 0.19 s a step on 2 cores, against 0.27 eager under bf16 autocast (which this
    # model's small matrices do not repay) and 0.23 eager in fp32; compiling takes about 90 s once.
    @torch.compile
    def velocity(noisy: torch.Tensor, tokens: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        context, pooled = prompt_embeddings(texts, tokens, 1)
        return transformer(noisy, context, pooled, t * 1000).sample

    def step(_: int) -> torch.Tensor:
        index = torch.randint(len(latents), (args.batch,), generator=generator)
        tokens = ids[index].clone()
        tokens[torch.rand(args.batch, generator=generator) < 0.1] = empty[0]
        x0 = latents[index]
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.sigmoid(torch.randn(args.batch, generator=generator))  # SD3's logit-normal timesteps
        noisy = (1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * noise
        return F.mse_loss(velocity(noisy, tokens, t), noise - x0)

    @torch.no_grad()
    def update_ema(i: int) -> None:
        decay = min(0.999, (2 + i) / (11 + i))
        for shadow, live in ((ema, transformer), *zip(ema_texts, texts)):
            for e, p in zip(shadow.parameters(), live.parameters()):
                e.lerp_(p, 1 - decay)

    modules = (
        {"dit": transformer, "ema": ema}
        | {f"text{i}": t for i, t in enumerate(texts)}
        | {f"ema_text{i}": t for i, t in enumerate(ema_texts)}
    )
    params = [p for module in (transformer, *texts) for p in module.parameters()]
    curve = train("dit", params, args.steps, args.lr, step, args.work, modules, generator, update_ema)
    return ema.eval(), [t.eval() for t in ema_texts], tokenizer, error, curve


def ship(vae, transformer, texts, tokenizer, out: Path) -> None:
    from diffusers import StableDiffusion3Pipeline

    vae.register_to_config(shift_factor=0.0)  # SD3's pipeline reads it; the shipped latents are centred already
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=architecture.dit_scheduler(),
        vae=vae,
        text_encoder=texts[0],
        tokenizer=tokenizer,
        text_encoder_2=texts[1],
        tokenizer_2=tokenizer,
        text_encoder_3=None,
        tokenizer_3=None,
    )
    pipe.save_pretrained(out, safe_serialization=True)


def main() -> None:
    from diffusers import AutoencoderKL

    args = parse()
    torch.set_num_threads(2)
    args.work.mkdir(parents=True, exist_ok=True)
    began, cpu_began = time.perf_counter(), cpu_seconds()
    images, captions, _ = rendered(args)
    laps = [("data", time.perf_counter())]
    shipped = AutoencoderKL.from_pretrained(MODEL_DIR / "vae")
    vae = architecture.vae().eval()  # the shipped weights in a fresh module, so no local path lands in the shipped config
    vae.load_state_dict(shipped.state_dict())
    vae.register_to_config(scaling_factor=shipped.config.scaling_factor)
    transformer, texts, tokenizer, error, curve = train_dit(vae, images, captions, args)
    laps.append(("encode + dit", time.perf_counter()))
    ship(vae, transformer, texts, tokenizer, args.out)
    laps.append(("ship", time.perf_counter()))
    stages = {name: end - start for (name, end), (_, start) in zip(laps, [("", began), *laps])}
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("work", "out", "log", "plot")}
    log = {
        "settings": settings,
        "zero_token_check_max_abs_error": error,
        "parameters": {
            "transformer": sum(p.numel() for p in transformer.parameters()),
            "text_encoders": sum(p.numel() for t in texts for p in t.parameters()),
        },
        "wall_s": time.perf_counter() - began,
        "stage_wall_s": stages,
        "cpu_s": cpu_seconds() - cpu_began,
        "threads": torch.get_num_threads(),
        "curves": {"dit": curve},
    }
    args.log.parent.mkdir(parents=True, exist_ok=True)
    args.log.write_text(json.dumps(log, indent=1))
    plot_curves(log["curves"], args.plot)
    print(f"shipped to {args.out} in {log['wall_s'] / 60:.1f} min ({log['cpu_s'] / 60:.1f} CPU-minutes)", flush=True)


if __name__ == "__main__":
    main()
