"""The VAE-recipe runs (``runs/*.jsonl``, written by ``explore.py``) as a table and a plot of held-out PSNR.

``python -m experiments.vae_recipe.report`` rewrites ``results.md`` and ``vae_recipe.png`` beside this file.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
# run name -> what it changes (the README discusses them in this order)
RUNS = {
    "base_tiny": "PyTorch default init, constant lr 2e-4 (warm-up 50), batch 4, means decoded",
    "plain": "as base_tiny, without timestep conditioning and noise injection",
    "x1": "default init, lr 5e-4 cosine, batch 4",
    "e2": "default init, lr 5e-4 cosine, batch 16",
    "s1": "default init, lr 5e-4 cosine, batch 8",
    "s2": "shortcut init, lr 5e-4 cosine, batch 8 (no timestep cond. / noise)",
    "L1": "shortcut init, lr 5e-4 cosine, batch 8, 1,500 steps (no timestep cond. / noise)",
    "L2": "as L1 + posterior samples (log-var init -4), KL 1e-5 from step 0, denoising decoder 25 %",
    "oracle": "decoder alone, fed each 32x32x8 block's mean colour as its latent",
    "overfit": "4 fixed clips, default init, lr 2e-4",
    "overfit_initall": "4 fixed clips, shortcut init, lr 2e-4",
    "overfit_lr1e3": "4 fixed clips, default init, lr 1e-3",
    "overfit_lr1e3_plain": "4 fixed clips, default init, lr 1e-3, no timestep cond. / noise",
}


# Session 7 (runs/s7_*.jsonl): 1,000 steps, lr 5e-4 with 50 warm-up steps and cosine decay, batch 8, shortcut
# init (--zero-res --id-down --zero-up), no timestep conditioning or noise; each row changes one thing from its
# group's baseline (s7_A2 in the world before session 7, --legacy-world: 18-px shapes; s7_N0 in today's world,
# 23-px shapes). Runs stopped early say so.
LEGACY = "--legacy-world"
S7_RUNS = {
    "s7_A2": ("baseline (18-px shapes)", LEGACY),
    "s7_D": ("L1 loss instead of MSE", f"{LEGACY} --loss l1"),
    "s7_C": ("lr 1e-3, betas (0.9, 0.95)", f"{LEGACY} --lr 1e-3 --betas 0.9,0.95"),
    "s7_E": ("average-pooling downsamplers instead of the strided identity", f"{LEGACY} --avg-down"),
    "s7_G": ("encoder widths 16,32,64,128 (last stage 2x)", f"{LEGACY} --enc 16,32,64,128"),
    "s7_B": ("encoder widths 16,32,128,256", f"{LEGACY} --enc 16,32,128,256"),
    "s7_F": ("decoder widths 2x (64,128,256): 2.7x the time per step", f"{LEGACY} --dec 64,128,256"),
    "s7_U122": ("decoder's last stage 32 wide instead of 16 (upsample_factor 1,2,2): 1.27x the time per step",
                f"{LEGACY} --upsample-factor 1,2,2"),
    "s7_H1": ("per-layer lr x (3456 / fan-in)", f"{LEGACY} --lr-fan-exponent 1"),
    "s7_H05": ("per-layer lr x (3456 / fan-in) ** 0.5", f"{LEGACY} --lr-fan-exponent 0.5"),
    "s7_W01": ("AdamW weight decay 0.1", f"{LEGACY} --wd 0.1"),
    "s7_W1": ("AdamW weight decay 1.0", f"{LEGACY} --wd 1.0"),
    "s7_HS20": ("shapes of half-size 0.2 (26 px); held-out clips too", f"{LEGACY} --shape-half-size 0.2"),
    "s7_OVF": ("8 fixed training clips (memorisation), PSNR on the first 4", f"{LEGACY} --fixed-batch"),
    "s7_N0": ("baseline (23-px shapes): 212 s", ""),
    "s7_N14": ("batch 14: 278 s", "--batch 14"),
    "s7_NB24": ("+ 24 single frames of the step's clips per step", "--images 24 --images-from-batch"),
    "s7_NP24": ("+ 24 single frames from a pool of the last 512 frames of past steps: 293 s", "--images 24 --image-pool 512"),
    "s7_NI24": ("+ 24 single frames of 24 fresh clips per step: 353 s", "--images 24"),
    "s7_LONG": ("+ 48 frames from a pool of 2,048, constant lr, 4,000 steps on 2 cores alone (25.01 dB at 2,500 "
                "steps, 538 s; 26.26 at 4,000, 840 s)", "--images 48 --image-pool 2048 --steps 4000 (no --cosine)"),
}
S7_COMMAND = ("python -m experiments.vae_recipe.explore --steps 1000 --eval-every 250 --lr 5e-4 --cosine "
              "--batch 8 --no-tc --no-noise --zero-res --id-down --zero-up")


def load(name: str) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in (HERE / "runs" / f"{name}.jsonl").read_text().splitlines() if line.strip()]
    curve = [row for row in rows if "psnr" in row and "step" in row]
    summary = next((row for row in rows if "tag" in row), {})
    return curve, summary


def table() -> str:
    lines = ["| run | what | steps | held-out PSNR (dB) | fixed clips PSNR (dB) | latent std | posterior std |",
             "|---|---|---|---|---|---|---|"]
    for name, what in RUNS.items():
        curve, _ = load(name)
        last = curve[-1]
        fitted = f"{last['train_psnr4']:.2f}" if last.get("train_psnr4") is not None else ""
        lines.append(f"| {name} | {what} | {last['step']} | {last['psnr']:.2f} | {fitted} | {last['latent_std']:.2f} | "
                     f"{last['post_std']:.2f} |")
    baseline = load("L1")[0][-1]["baseline_mean"]
    lines.append(f"\nPredicting each held-out clip's mean colour scores {baseline:.2f} dB.")
    return "\n".join(lines)


def table_s7() -> str:
    steps = (250, 500, 750, 1000)
    lines = ["| run | change | " + " | ".join(f"step {step}" for step in steps) + " | flags |",
             "|---|---|" + "---|" * len(steps) + "---|"]
    for name, (what, flags) in S7_RUNS.items():
        curve, _ = load(name)
        by_step = {row["step"]: row.get("train_psnr4") or row["psnr"] for row in curve}
        last = max(by_step)
        cells = [f"{by_step[step]:.2f}" if step in by_step else ("-" if step < last else "stopped") for step in steps]
        lines.append(f"| {name} | {what} | " + " | ".join(cells) + f" | `{flags}` |")
    lines.append(f"\nHeld-out PSNR (dB) on 16 fresh clips; every run is `{S7_COMMAND}` plus its flags. Times: "
                 "wall seconds for 1,000 steps on one core while another run shared the machine.")
    return "\n".join(lines)


def plot(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    for name in ("base_tiny", "x1", "e2", "s1", "s2", "L1", "L2"):
        curve, _ = load(name)
        axis.plot([row["step"] for row in curve], [row["psnr"] for row in curve], marker="o", markersize=3, label=name)
    axis.axhline(load("L1")[0][-1]["baseline_mean"], color="grey", linestyle="--", label="mean colour")
    axis.axhline(25.0, color="black", linestyle=":", label="target 25 dB")
    axis.set_xlabel("training step")
    axis.set_ylabel("held-out PSNR (dB)")
    axis.set_title("tiny LTX VAE (1:192) on fresh demo-world clips, 9x64x64")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    (HERE / "results.md").write_text("# VAE recipe runs\n\nGenerated by `python -m experiments.vae_recipe.report` "
                                     "from `runs/*.jsonl`.\n\n" + table() + "\n\n## Session 7: one change each from "
                                     "the shortcut baseline, 1,000 steps\n\n" + table_s7() + "\n")
    plot(HERE / "vae_recipe.png")
    print(table())
    print(table_s7())


if __name__ == "__main__":
    main()
