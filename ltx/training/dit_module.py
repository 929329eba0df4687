"""The DiT training stage: rectified flow on VAE latents with per-token-timestep conditioning, text
dropout for guidance, random token dropping, a deterministic validation loss and EMA weights."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import save_image

from ltx.data.latents import LatentDataModule
from ltx.diffusion.conditioning import (
    ConditioningConfig,
    apply_conditioning,
    drop_text,
    sample_conditioning_frames,
)
from ltx.diffusion.conditioning_modes import draw_conditioning_mask
from ltx.diffusion.flow import velocity_target
from ltx.interop.diffusers import diffusers_can_describe, export_transformer, export_transformer_native
from ltx.interop.lora import write_lora_file
from ltx.losses import WeightedLossTerms
from ltx.models.dit import VideoTransformer, patchify_latents
from ltx.models.dit.transformer import reference_tokens
from ltx.models.vae import VideoAutoencoder
from ltx.positional.coordinates import LatentGrid
from ltx.registry import TEXT_ENCODERS, TIMESTEP_SAMPLERS, TRAINING_STAGES
from ltx.training.build import build_dit, build_vae, load_latent_statistics, vae_from_checkpoint
from ltx.training.latent_record import LatentRecord, check_latent_shards
from ltx.training.lora import ADAPTER_NAME, FinetuneSettings, add_lora, trainable_names
from ltx.training.previews import log_image
from ltx.training.randomness import BatchRandomness
from ltx.training.samples import SampleSettings, generate, sample_grid, write_video
from ltx.training.schedules import scheduled
from ltx.training.stage import TrainingStage, rebuild_with_weights

log = logging.getLogger(__name__)
TIMESTEP_BINS = (0.0, 0.25, 0.5, 0.75, 1.0)


def keep_random_tokens(batch: int, tokens: int, keep: int, generator: torch.Generator | None = None,
                       device: torch.device | None = None) -> torch.Tensor:
    """`(B, keep)` sorted indices of the tokens each sample keeps (random token dropping)."""
    scores = torch.rand(batch, tokens, generator=generator, device=device)
    return scores.topk(keep, dim=1).indices.sort(dim=1).values


def gather_tokens(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """`(B, N, ...)` -> `(B, K, ...)` at `(B, K)` indices."""
    index = indices.view(*indices.shape, *([1] * (values.ndim - 2))).expand(-1, -1, *values.shape[2:])
    return values.gather(1, index)


@TRAINING_STAGES.register("dit")
class DiTModule(TrainingStage):
    """Trains ``VideoTransformer`` from the whole run config (``model.dit``, ``model.vae``,
    ``text_encoder``, ``loss``, ``dit_training``, ``optimizer``, ``scheduler``); videos are encoded online by
    the frozen VAE (its EMA weights when ``vae_checkpoint`` names a VAE-stage checkpoint) and captions by the frozen
    text encoder. Loss inputs: ``prediction`` = (predicted velocity, target velocity, loss mask)."""

    parallel_targets = ("transformer",)

    def __init__(self, cfg: DictConfig | dict[str, Any]):
        super().__init__()
        cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
        self.save_hyperparameters({"cfg": OmegaConf.to_container(cfg, resolve=True)})
        self.cfg, self.training_cfg = cfg, cfg.dit_training
        self.transformer: VideoTransformer = build_dit(cfg.model.dit)
        self.finetune = FinetuneSettings.from_config(cfg.get("finetune"))
        if self.finetune.lora:
            if not cfg.model.dit.get("pretrained"):
                raise ValueError("finetune=lora adapts a released or trained DiT: set model.dit.pretrained to its local "
                                 "diffusers-layout transformer directory (or .safetensors file); LoRA on a random "
                                 "model learns nothing useful and its checkpoints could not be restored")
            add_lora(self.transformer, self.finetune)
            self.strict_loading = False  # checkpoints hold the adapters, not the frozen base (on_save_checkpoint)
        self.vae = self.build_frozen_vae(cfg)
        self.text_encoder = TEXT_ENCODERS.build(cfg.text_encoder.name, **dict(cfg.text_encoder.get("kwargs") or {}))
        self.text_encoder.requires_grad_(False)
        self._null_text: tuple[torch.Tensor, torch.Tensor] | None = None  # (text, mask) of "", see null_text
        if self.text_encoder.output_dim != self.transformer.config.caption_channels:
            raise ValueError(f"text encoder {cfg.text_encoder.name!r} gives {self.text_encoder.output_dim}-d features "
                             f"but the DiT expects caption_channels={self.transformer.config.caption_channels}")
        sampler = self.training_cfg.timestep_sampler
        self.timestep_sampler = TIMESTEP_SAMPLERS.build(sampler.name, **dict(sampler.get("kwargs") or {}))
        self.conditioning = ConditioningConfig(**dict(self.training_cfg.conditioning))
        self.losses = WeightedLossTerms(cfg.loss.terms)

    @staticmethod
    def build_frozen_vae(cfg: DictConfig) -> VideoAutoencoder:
        vae = vae_from_checkpoint(cfg.vae_checkpoint) if cfg.get("vae_checkpoint") else build_vae(cfg.model.vae)
        if cfg.model.vae.get("latent_stats"):
            load_latent_statistics(vae, cfg.model.vae.latent_stats)
        if not (cfg.get("vae_checkpoint") or cfg.model.vae.get("pretrained") or cfg.get("weights_from_checkpoint")):
            log.warning("the DiT trains on latents of a randomly initialised VAE: set vae_checkpoint (a VAE-stage "
                        "checkpoint, e.g. from `make train-vae`) or model.vae.pretrained (released weights)")
        return vae.eval().requires_grad_(False)

    def setup(self, stage: str) -> None:
        """On precomputed latents: refuse shards made by another VAE or other latent statistics than this
        run's (``ltx.training.latent_record``; shards without a record only get a warning)."""
        datamodule = self.trainer.datamodule
        if isinstance(datamodule, LatentDataModule):
            expected = LatentRecord.of_config(self.vae, self.cfg)
            for split, patterns in (("train", datamodule.train_shards), ("val", datamodule.val_shards)):
                if patterns:
                    check_latent_shards(patterns, expected, split)

    def train(self, mode: bool = True) -> DiTModule:
        super().train(mode)
        self.vae.eval()  # frozen encoders stay in eval mode
        self.text_encoder.eval()
        return self

    def configure_optimizers(self) -> dict[str, Any]:
        """``optimizer`` over the DiT with the ``scheduler`` lr schedule, which Lightning steps after each
        optimizer step (logged as ``lr``)."""
        parameters = [parameter for parameter in self.transformer.parameters() if parameter.requires_grad]
        optimizer = instantiate(self.cfg.optimizer)(parameters)  # under LoRA: the adapters only
        return scheduled(optimizer, self.cfg.get("scheduler"), name="lr")

    # ---- LoRA: adapters only in checkpoints and in the EMA ------------------------------------
    @property
    def ema_trainable_only(self) -> bool:
        """Under LoRA the EMA averages the adapters only (``EMACallback``)."""
        return self.finetune.lora

    def frozen_base_keys(self, state: dict[str, Any]) -> list[str]:
        """State-dict keys of the frozen DiT base (LoRA): everything under ``transformer.`` but the adapters."""
        adapters = {f"transformer.{name}" for name in trainable_names(self.transformer)}
        return [key for key in state if key.startswith("transformer.") and key not in adapters]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Under LoRA the frozen base is left out: it is rebuilt from ``model.dit.pretrained``."""
        if self.finetune.lora:
            state = checkpoint["state_dict"]
            for key in self.frozen_base_keys(state):
                del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.finetune.lora:
            state = checkpoint.get("state_dict") or {}
            missing = sorted(f"transformer.{name}" for name in trainable_names(self.transformer)
                             if f"transformer.{name}" not in state)
            if missing:
                raise ValueError(f"this LoRA run's checkpoint lacks adapter weights {missing[:4]} ({len(missing)} in all): "
                                 f"was it written with other finetune.target_modules or rank, or by a full fine-tune?")

    # ---- inputs ----------------------------------------------------------------------------
    @torch.no_grad()
    def encode_batch(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised VAE means `(B, C, F', H', W')` and text features `(B, L, D)` with mask `(B, L)`:
        precomputed in latent batches (``ltx.cli.precompute``), else encoded here."""
        if "latents" in batch:
            return batch["latents"], batch["text"], batch["text_mask"]
        latents = self.vae.normalize_latents(self.vae.encode(batch["video"]).mean)
        text, mask = self.text_encoder.encode(list(batch["caption"]))
        return latents, text.to(latents.dtype), mask

    @torch.no_grad()
    def reference_latents(self, batch: dict[str, Any]) -> torch.Tensor | None:
        """IC-LoRA: the batch's reference as normalised latents (``reference_latents``, or a ``reference_video``
        encoded here by the frozen VAE); None when the batch has none."""
        if "reference_latents" in batch:
            return batch["reference_latents"]
        if "reference_video" in batch:
            return self.vae.normalize_latents(self.vae.encode(batch["reference_video"]).mean)
        return None

    @torch.no_grad()
    def null_text(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The empty prompt's features `(batch, L, D)` and mask `(batch, L)`, the unconditional text of
        classifier-free guidance. The text encoder is frozen, so they are encoded once per device (on the
        demo's CPU DiT, encoding them every step was 6 % of the step)."""
        if self._null_text is None or self._null_text[0].device != torch.device(device):
            text, mask = self.text_encoder.encode([""])
            self._null_text = (text.to(device), mask.to(device))
        text, mask = self._null_text
        return text.expand(batch, -1, -1), mask.expand(batch, -1)

    # ---- training ----------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_index: int) -> torch.Tensor:
        latents, text, text_mask = self.encode_batch(batch)
        random = self.batch_randomness(latents.shape[0], latents.device)
        null_text, null_mask = self.null_text(latents.shape[0], latents.device)
        probability = self.training_cfg.text_dropout
        dropped = random.rows(lambda n, g: torch.rand(n, generator=g, device=g.device) < probability)
        text, text_mask, _ = drop_text(text, text_mask, probability, null_embeddings=null_text, null_mask=null_mask,
                                       dropped=dropped)
        loss, per_sample, timestep = self.flow_loss(latents, text, text_mask, batch["fps"], random, conditioned=True,
                                                    drop_tokens=True, reference=self.reference_latents(batch))
        # averaged over ranks: the loss of the global batch
        self.log("train/loss", loss, prog_bar=True, batch_size=latents.shape[0], sync_dist=True)
        for low, high in zip(TIMESTEP_BINS[:-1], TIMESTEP_BINS[1:]):
            in_bin = (timestep >= low) & (timestep < high) if high < 1 else (timestep >= low)
            if in_bin.any():
                self.log(f"train/loss_t{low:.2f}-{high:.2f}", per_sample[in_bin].mean(), batch_size=int(in_bin.sum()))
        return loss

    def flow_loss(self, latents: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, fps: torch.Tensor,
                  random: BatchRandomness, conditioned: bool, drop_tokens: bool,
                  timestep: torch.Tensor | None = None,
                  reference: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rectified-flow loss: total, per-sample values `(B,)` and the sample timesteps `(B,)`; every
        random draw comes from ``random`` (see ``BatchRandomness``). ``reference`` `(B, C, F, H/s, W/s)`
        (IC-LoRA): clean latents appended to the sequence at t = 0, aligned to the target's grid, not in the loss
        and never dropped."""
        batch, _, frames, height, width = latents.shape
        grid = LatentGrid(frames, height, width)
        device = latents.device
        if timestep is None:
            timestep = random.rows(lambda n, g: self.timestep_sampler.sample(n, grid.num_tokens, generator=g))
            timestep = timestep.to(device)
        noise = random.normal(tuple(latents.shape), latents.dtype).to(device)
        conditioning_frames = torch.zeros(batch, frames, dtype=torch.bool, device=device)
        if conditioned:
            conditioning_frames = random.rows(lambda n, g: sample_conditioning_frames(n, frames, self.conditioning, g))
            conditioning_frames = conditioning_frames.to(device)  # (B, F)
            if self.conditioning.modes:  # registered modes, per token, combined with the frame modes
                modes = self.conditioning.modes
                tokens = random.rows(lambda n, g: draw_conditioning_mask(n, (frames, height, width), modes, g))
                tokens = tokens.to(device) | conditioning_frames[:, :, None, None]  # (B, F, H, W)
                conditioning_frames = tokens & ~tokens.flatten(1).all(dim=1)[:, None, None, None]
        noisy, token_timesteps, loss_mask = apply_conditioning(latents, noise, timestep, conditioning_frames,
                                                               self.conditioning.conditioning_timestep)
        target = patchify_latents(velocity_target(latents, noise))  # (B, N, C)
        tokens = patchify_latents(noisy)  # (B, N, C)
        token_timesteps = token_timesteps.flatten(1)  # (B, N)
        token_mask = loss_mask.flatten(2).transpose(1, 2)  # (B, N, 1)
        coordinates = self.transformer.coordinates(grid, fps.to(device), batch, device)  # (B, N, 3)
        if reference is not None:
            extra, extra_coordinates = reference_tokens(reference.to(tokens.dtype), coordinates, grid)  # (B, N_r, .)
        drop = self.training_cfg.get("max_token_drop", 0.0) if drop_tokens else 0.0
        if drop > 0:
            fraction = random.shared(lambda g: torch.rand(1, generator=g, device=g.device)).item()
            keep = max(1, round(grid.num_tokens * (1 - drop * fraction)))
            indices = random.rows(lambda n, g: keep_random_tokens(n, grid.num_tokens, keep, g, g.device)).to(device)
            tokens, target, coordinates, token_timesteps, token_mask = (
                gather_tokens(t, indices) for t in (tokens, target, coordinates, token_timesteps, token_mask))
        if reference is not None:
            kept = tokens.shape[1]
            tokens, coordinates = torch.cat([tokens, extra], dim=1), torch.cat([coordinates, extra_coordinates], dim=1)
            token_timesteps = torch.cat([token_timesteps, token_timesteps.new_zeros(batch, extra.shape[1])], dim=1)
        prediction = self.transformer.forward_tokens(tokens, coordinates, token_timesteps, text, text_mask)
        if reference is not None:
            prediction = prediction[:, :kept]  # (B, N, C): the target's tokens only
        total, _ = self.losses({"prediction": (prediction, target, token_mask)})
        per_sample_error = ((prediction.detach() - target) ** 2 * token_mask).sum(dim=(1, 2))
        per_sample = per_sample_error / (token_mask.sum(dim=(1, 2)) * target.shape[-1]).clamp_min(1)
        return total, per_sample, timestep

    # ---- validation --------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_index: int) -> None:
        """The loss at fixed timesteps with fixed noise: comparable across validations and runs."""
        latents, text, text_mask = self.encode_batch(batch)
        random = self.batch_randomness(latents.shape[0], latents.device, seed=self.training_cfg.validation_seed,
                                       step=batch_index)
        losses = []
        for t in self.training_cfg.validation_timesteps:
            timestep = torch.full((latents.shape[0],), float(t), device=latents.device)
            loss, _, _ = self.flow_loss(latents, text, text_mask, batch["fps"], random, conditioned=False,
                                        drop_tokens=False, timestep=timestep, reference=self.reference_latents(batch))
            self.log(f"val/loss_t{float(t):.2f}", loss, batch_size=latents.shape[0], sync_dist=True)
            losses.append(loss)
        self.log("val/loss", torch.stack(losses).mean(), prog_bar=True, batch_size=latents.shape[0], sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        """Every ``dit_training.samples.every_n_validations`` validations, sample the fixed prompts."""
        samples = self.training_cfg.get("samples")
        if not samples or not samples.get("prompts") or self.trainer.sanity_checking:
            return
        if not (self.trainer.is_global_zero or self.sharded):  # sharded models need every rank in each forward
            return
        self._validations = getattr(self, "_validations", 0) + 1
        if (self._validations - 1) % samples.get("every_n_validations", 1):
            return
        settings = SampleSettings(**{k: v for k, v in samples.items() if k not in ("prompts", "every_n_validations")})
        videos = generate(self.transformer, self.vae, self.text_encoder, list(samples.prompts), settings)
        if not self.trainer.is_global_zero:
            return
        directory = Path(self.cfg.run_dir) / "samples"
        for index, video in enumerate(videos):
            write_video(video, directory / f"step_{self.global_step:07d}_prompt{index}.mp4", settings.fps)
        grid = sample_grid(videos)
        save_image(grid, directory / f"step_{self.global_step:07d}.png")
        log_image(self.loggers, "samples", grid, self.global_step)

    def export_weights(self, state_dict: dict[str, torch.Tensor], path: Path) -> None:
        """Write the DiT with ``state_dict`` (e.g. the gathered EMA weights) in the diffusers layout; a DiT
        that layout cannot describe (positions, RoPE spacing or extent other than the release's, as in
        the ablations or from a plugin) in our own (``export_transformer_native``), with a warning. Under
        LoRA ``state_dict`` holds the adapters: they are written as a diffusers LoRA file."""
        if self.finetune.lora:
            adapters = {name.replace(f".{ADAPTER_NAME}.", "."): tensor for name, tensor in state_dict.items()}
            file = write_lora_file(adapters, self.finetune.peft_config(), path)
            log.info("exported the LoRA adapters to %s (diffusers: LTXPipeline.load_lora_weights)", file)
            return
        config = self.transformer.config
        model = rebuild_with_weights(lambda: VideoTransformer(config), state_dict)
        if diffusers_can_describe(config):
            export_transformer(model, path)
            log.info("exported DiT weights to %s", path)
        else:
            export_transformer_native(model, path)
            log.warning("diffusers' transformer hard-codes the release's positions and RoPE; exported the DiT "
                        "weights to %s in our layout (transformer.safetensors + ltx_dit_config.json)", path)
