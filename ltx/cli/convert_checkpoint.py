"""Convert a training checkpoint (distributed/sharded or single file) into single files and the diffusers
layout: ``python -m ltx.cli.convert_checkpoint CHECKPOINT OUTPUT_DIR [--weights ema|trained]``.

Writes into OUTPUT_DIR:
  - ``checkpoint.ckpt``: the whole stage state (every module, EMA included) with the run's config and
    step, optimizer states left out. ``vae_checkpoint=``, ``make sample CHECKPOINT=`` and resuming
    with weights only accept it.
  - ``model.safetensors``: the trained model (VAE or DiT) alone, EMA weights by default.
  - ``diffusers/``: the same weights as a diffusers model directory (``AutoencoderKLLTXVideo`` or
    ``LTXVideoTransformer3DModel``).
  - for a LoRA run (``finetune=lora``): ``lora/pytorch_lora_weights.safetensors``, the adapters as a diffusers
    LoRA file, while ``model.safetensors`` and ``diffusers/`` hold the base with the adapters merged in.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ltx.interop.diffusers import export_transformer, export_vae
from ltx.interop.lora import export_lora
from ltx.models.dit import VideoTransformer
from ltx.training.build import model_from_checkpoint
from ltx.training.checkpoints import load_full_checkpoint
from ltx.training.lora import has_lora, merged_state_dict

log = logging.getLogger(__name__)


EXPORTS: dict[str, Callable[[Any, Path], Path]] = {"vae": export_vae, "dit": export_transformer}


def convert(checkpoint_path: str | Path, output_dir: str | Path, weights: str = "ema") -> Path:
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    checkpoint = load_full_checkpoint(checkpoint_path)
    model, used_ema = model_from_checkpoint(checkpoint, use_ema=weights == "ema", source=checkpoint_path)
    if weights == "ema" and not used_ema:
        raise ValueError("the checkpoint has no EMA weights (callbacks.ema was off); use --weights trained")
    consolidated = {key: value for key, value in checkpoint.items() if key not in ("optimizer_states", "lr_schedulers")}
    torch.save(consolidated, output / "checkpoint.ckpt")
    if has_lora(model):
        export_lora(model, output / "lora")
        merged = VideoTransformer(model.config)
        merged.load_state_dict(merged_state_dict(model), strict=True)
        model = merged
    tensors = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(tensors, str(output / "model.safetensors"), metadata={"format": "pt", "weights": weights})
    EXPORTS[checkpoint["hyper_parameters"]["cfg"]["stage"]](model, output / "diffusers")
    log.info("converted %s (step %s, %s weights) into %s", checkpoint_path, checkpoint.get("global_step"), weights, output)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint file or distributed checkpoint directory (*.ckpt)")
    parser.add_argument("output_dir")
    parser.add_argument("--weights", choices=("ema", "trained"), default="ema",
                        help="the EMA weights (default) or the trained weights")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    convert(args.checkpoint, args.output_dir, args.weights)


if __name__ == "__main__":
    main()
