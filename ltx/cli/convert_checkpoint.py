"""Convert a training checkpoint (distributed/sharded or single file) into single files and the diffusers
layout: ``python -m ltx.cli.convert_checkpoint CHECKPOINT OUTPUT_DIR [--weights ema|trained]``.

Writes into OUTPUT_DIR:
  - ``checkpoint.ckpt``: the whole stage state (every module, EMA included) with the run's config and
    step, optimizer states left out. ``vae_checkpoint=``, ``make sample CHECKPOINT=`` and resuming
    with weights only accept it.
  - ``model.safetensors``: the trained model (VAE or DiT) alone, EMA weights by default.
  - ``diffusers/``: the same weights as a diffusers model directory (``AutoencoderKLLTXVideo`` or
    ``LTXVideoTransformer3DModel``).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ltx.interop.diffusers import export_transformer, export_vae
from ltx.training.build import build_dit, build_vae
from ltx.training.checkpoints import load_full_checkpoint, match_shapes
from ltx.training.ema import ema_state_dict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageModel:
    attribute: str  # the trained model's attribute in the stage module (its state-dict prefix)
    config_key: str  # where the run config describes it
    build: Callable[[Any], torch.nn.Module]
    export: Callable[[Any, Path], Path]


STAGE_MODELS = {
    "vae": StageModel("vae", "vae", build_vae, export_vae),
    "dit": StageModel("transformer", "dit", build_dit, export_transformer),
}


def trained_model(checkpoint: dict[str, Any], weights: str) -> tuple[torch.nn.Module, StageModel]:
    """The stage's trained model rebuilt from the checkpoint's config, with its EMA or trained weights."""
    cfg = checkpoint.get("hyper_parameters", {}).get("cfg") or {}
    stage = cfg.get("stage")
    if stage not in STAGE_MODELS:
        raise ValueError(f"checkpoint of stage {stage!r}; this command converts stages {sorted(STAGE_MODELS)}")
    spec = STAGE_MODELS[stage]
    model = spec.build({**cfg["model"][spec.config_key], "pretrained": None, "latent_stats": None})
    prefix = f"{spec.attribute}."
    state = {k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    if weights == "ema":
        ema = ema_state_dict(checkpoint["state_dict"])
        if ema is None:
            raise ValueError("the checkpoint has no EMA weights (callbacks.ema was off); use --weights trained")
        state = ema
    model.load_state_dict(match_shapes(state, model), strict=True)
    return model, spec


def convert(checkpoint_path: str | Path, output_dir: str | Path, weights: str = "ema") -> Path:
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    checkpoint = load_full_checkpoint(checkpoint_path)
    model, spec = trained_model(checkpoint, weights)
    consolidated = {key: value for key, value in checkpoint.items() if key not in ("optimizer_states", "lr_schedulers")}
    torch.save(consolidated, output / "checkpoint.ckpt")
    tensors = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(tensors, str(output / "model.safetensors"), metadata={"format": "pt", "weights": weights})
    spec.export(model, output / "diffusers")
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
