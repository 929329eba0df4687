"""The VAE training stage: reconstruction + KL + perceptual + wavelet terms, the denoising-decoder
objective and an (r)GAN, with manual optimisation alternating generator and discriminator."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MeanMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ltx.interop.diffusers import export_vae, export_vae_native, vae_diffusers_can_describe
from ltx.losses import WeightedLossTerms
from ltx.losses.gan import adaptive_gan_weight
from ltx.models.vae import VideoAutoencoder
from ltx.registry import DISCRIMINATORS, LOSSES, TRAINING_STAGES
from ltx.training.build import build_vae
from ltx.training.previews import log_image, write_previews
from ltx.training.randomness import BatchRandomness
from ltx.training.schedules import delayed_schedule, scheduled
from ltx.training.stage import TrainingStage, rebuild_with_weights
from ltx.training.vae_init import initialize_vae

log = logging.getLogger(__name__)
IMAGE_STREAM = 7  # mixed into the run's seed for the image draws, so they differ from the clips' draws
# Lightning warns that checkpoints of manually optimised modules hold the post-step weights, with a
# page of example code; post-step weights are what we want.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")


def decoder_timesteps(batch: int, probability: float, max_timestep: float, generator: torch.Generator | None = None,
                      device: torch.device | None = None) -> torch.Tensor:
    """Per-sample decoder noise levels `(B,)`: with ``probability``, t ~ U(0, ``max_timestep``) (the paper
    trains the denoising decoder on t in [0, 0.2]; uniform is our documented choice), else t = 0."""
    uniform = torch.rand(batch, generator=generator, device=device) * max_timestep
    noisy = torch.rand(batch, generator=generator, device=device) < probability
    return torch.where(noisy, uniform, torch.zeros_like(uniform))


def noise_latents(latents: torch.Tensor, timestep: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``(1 - t) z + t eps`` per sample (rectified-flow interpolation towards the noise ``eps``)."""
    t = timestep.view(-1, 1, 1, 1, 1).to(latents.dtype)
    return (1 - t) * latents + t * noise


@TRAINING_STAGES.register("vae")
class VAEModule(TrainingStage):
    """Trains ``VideoAutoencoder`` from the whole run config (``model.vae``, ``loss``, ``vae_training``,
    ``optimizer``, ``scheduler``). Checkpoints hold the config, so ``VAEModule.load_from_checkpoint``
    rebuilds itself.

    Loss inputs by kind: ``prediction`` = (reconstruction, original video), ``posterior`` = (mean,
    log-variance). The GAN (``loss.gan``, optional) starts at ``start_step``; its weight is fixed or
    adaptive (ratio of gradient norms at the decoder's last layer, VQGAN-style).
    """

    parallel_targets = ("vae", "discriminator")
    separately_reduced = ("discriminator",)  # its own backward pass; under trainer=ddp its own DDP

    def __init__(self, cfg: DictConfig | dict[str, Any]):
        super().__init__()
        cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
        self.save_hyperparameters({"cfg": OmegaConf.to_container(cfg, resolve=True)})
        self.cfg = cfg
        self.automatic_optimization = False
        self.vae: VideoAutoencoder = build_vae(cfg.model.vae)
        self.losses = WeightedLossTerms(cfg.loss.terms)
        self.training_cfg = cfg.vae_training
        if not cfg.model.vae.get("pretrained"):  # a from-scratch start: the recipe's initialisation
            initialize_vae(self.vae, self.training_cfg.get("init", "default"),
                           initial_logvar=self.training_cfg.get("initial_logvar"))
        gan = cfg.loss.get("gan")
        self.gan_cfg = gan if gan and gan.get("weight", 0) else None
        if self.gan_cfg is not None:
            self.gan_objective = LOSSES.build(self.gan_cfg.objective, loss_type=self.gan_cfg.loss_type)
            in_channels = self.gan_objective.discriminator_in_channels(self.vae.config.out_channels)
            self.discriminator = DISCRIMINATORS.build(self.gan_cfg.discriminator, in_channels=in_channels,
                                                      **dict(self.gan_cfg.get("discriminator_kwargs") or {}))
        self._image_pools: dict[tuple[int, int], list] = {}  # frame size -> [ring buffer, frames written] (frames_as_images)
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.val_lpips = MeanMetric()
        self.validation_lpips = self.build_validation_lpips()

    def build_validation_lpips(self) -> torch.nn.Module | None:
        """The perceptual loss term when there is one, else an LPIPS from ``vae_training.validation_lpips``
        (a local backbone is needed; without one val/lpips is not computed, and the log says so)."""
        if "perceptual" in self.losses.terms:
            return self.losses.terms["perceptual"]
        settings = self.training_cfg.get("validation_lpips") or {}
        if settings.get("backbone_path"):
            return LOSSES.build("lpips", **dict(settings))
        log.warning("val/lpips is not computed: no LPIPS backbone configured "
                    "(set vae_training.validation_lpips.backbone_path to a local torchvision vgg16 state dict)")
        return None

    # ---- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self) -> list[dict[str, Any]]:
        """The generator's ``optimizer`` with the ``scheduler`` lr schedule and, with a GAN, the
        discriminator's (``loss.gan.lr`` / ``betas`` / ``scheduler``). Manual optimisation: each schedule is
        stepped in ``step_optimizer`` right after its optimizer, so the discriminator's counts
        discriminator steps, which begin at ``loss.gan.start_step`` (see ``schedules.delayed_schedule``).
        Until then ``lr/discriminator`` shows the rate of its first step."""
        generator = instantiate(self.cfg.optimizer)(self.vae.parameters())
        configs = [scheduled(generator, self.cfg.get("scheduler"), name="lr/generator")]
        if self.gan_cfg is not None:
            overrides: dict[str, Any] = {}  # null = the generator's setting
            if self.gan_cfg.get("lr") is not None:
                overrides["lr"] = float(self.gan_cfg.lr)
            if self.gan_cfg.get("betas") is not None:
                overrides["betas"] = tuple(float(beta) for beta in self.gan_cfg.betas)
            discriminator = instantiate(self.cfg.optimizer)(self.discriminator.parameters(), **overrides)
            schedule = self.gan_cfg.get("scheduler") or delayed_schedule(self.cfg.get("scheduler"),
                                                                         int(self.gan_cfg.get("start_step", 0)))
            configs.append(scheduled(discriminator, schedule, name="lr/discriminator", label="loss.gan.scheduler"))
        return configs

    def check_parallel_support(self, settings: Any, sharding: bool) -> None:
        if sharding and self.gan_cfg is not None and self.gan_cfg.get("adaptive_weight", False):
            raise ValueError("loss.gan.adaptive_weight=true differentiates with respect to the decoder's last weight, "
                             "which FSDP2 shards; set loss.gan.adaptive_weight=false with trainer=fsdp, or train the "
                             "VAE with trainer=ddp")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint trained without a GAN resumed with one (``resume=<path>`` and a ``loss.gan``: GAN
        fine-tuning of a trained VAE) gets this module's fresh discriminator; its optimizer starts fresh too
        (Lightning restores the optimizers the checkpoint has, the generator's)."""
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("state_dict")
        if state is None or self.gan_cfg is None or any(key.startswith("discriminator.") for key in state):
            return
        log.info("the checkpoint has no discriminator (trained without a GAN): the GAN starts with a fresh one")
        state.update({f"discriminator.{key}": value for key, value in self.discriminator.state_dict().items()})

    def gan_active(self) -> bool:
        return self.gan_cfg is not None and self.global_step >= self.gan_cfg.get("start_step", 0)

    def training_step(self, batch: dict[str, Any], batch_index: int) -> torch.Tensor:
        video = batch["video"]  # (B, 3, F, H, W) in [-1, 1]
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        schedulers = self.lr_schedulers()
        schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
        gan_on = self.gan_active()  # decided once: the generator step below advances global_step
        random = self.batch_randomness(video.shape[0], video.device)
        reconstruction, posterior, timestep = self.reconstruct(video, random)
        total, values = self.losses({"prediction": (reconstruction, video), "posterior": (posterior.mean, posterior.logvar)},
                                    scales=self.loss_scales())
        logs = {f"train/{name}": value.detach() for name, value in values.items()}
        images = self.frames_as_images(video)
        if images is not None:  # joint image-video training: single frames, encoded alone, with the same terms
            image_random = self.batch_randomness(images.shape[0], video.device,
                                                 seed=BatchRandomness.mix(int(self.cfg.get("seed", 0)), IMAGE_STREAM))
            image_reconstruction, image_posterior, _ = self.reconstruct(images, image_random)
            image_total, image_values = self.losses(
                {"prediction": (image_reconstruction, images), "posterior": (image_posterior.mean, image_posterior.logvar)},
                scales=self.loss_scales())
            total = total + float(self.training_cfg.get("image_loss_weight", 1.0)) * image_total
            logs.update({f"train/image_{name}": value.detach() for name, value in image_values.items()})
        if gan_on:
            # the order of (original, reconstruction) pairs (rgan): one draw per sample of the global batch
            order = random.rows(lambda n, g: torch.rand(n, generator=g, device=g.device) < 0.5).to(video.device)
            generator_loss = self.gan_objective.generator_loss(self.discriminator, video, reconstruction, order=order)
            weight = self.gan_weight(total, generator_loss)
            total = total + weight * generator_loss
            logs.update({"train/gan_generator": generator_loss.detach(), "train/gan_weight": weight.detach()})
        self.step_optimizer(optimizers[0], schedulers[0], total, self.vae)
        logs["train/loss"] = total.detach()
        if gan_on:
            # through its own DDP under trainer=ddp: this backward averages the discriminator's gradients
            discriminator_loss = self.gan_objective.discriminator_loss(self.replica("discriminator"), video,
                                                                       reconstruction.detach(), order=order)
            # stepped on the raw optimizer so that global_step counts generator steps only
            self.step_optimizer(optimizers[1], schedulers[1], discriminator_loss, self.discriminator, count_step=False)
            logs["train/gan_discriminator"] = discriminator_loss.detach()
        logs["train/decoder_timestep"] = timestep.mean()
        self.log_dict(logs, prog_bar=False, batch_size=video.shape[0], sync_dist=True)  # global-batch values
        self.log("loss", total.detach(), prog_bar=True, logger=False, batch_size=video.shape[0], sync_dist=True)
        return total.detach()

    def frames_as_images(self, video: torch.Tensor) -> torch.Tensor | None:
        """Joint image-video training: ``B * vae_training.images_per_clip`` single frames as one-frame videos
        `(B * k, 3, 1, H, W)`, or None when ``images_per_clip`` is 0 or the clips are images already.

        ``k`` random frames of each clip enter a first-in-first-out pool of the last ``vae_training.image_pool``
        frames of this shape (0: no pool), and the images are drawn from the pool: frames of *other* scenes
        than this step's clips. The causal encoder encodes a first frame alone (1:24 instead of 1:192), so
        images teach the decoder to draw at a fraction of a clip's cost, and the video path shares those
        weights (experiments/vae_recipe). Draws are a function of (seed, step); the pool is not checkpointed
        (a resumed run refills it) and each rank keeps its own."""
        per_clip = int(self.training_cfg.get("images_per_clip", 0) or 0)
        pool_size = int(self.training_cfg.get("image_pool", 0) or 0)
        if per_clip < 0 or pool_size < 0:
            raise ValueError(f"vae_training.images_per_clip and image_pool must be >= 0, got {per_clip} and {pool_size}")
        if per_clip == 0 or video.shape[2] == 1:
            return None
        batch, frames = video.shape[0], video.shape[2]
        count = batch * per_clip
        random = self.batch_randomness(batch, video.device,  # not the stream the images' own draws use
                                       seed=BatchRandomness.mix(int(self.cfg.get("seed", 0)), IMAGE_STREAM, 1))
        picks = random.rows(lambda n, g: torch.randint(frames, (n, per_clip), generator=g, device=g.device))  # (B, k)
        clips = torch.arange(batch, device=video.device).repeat_interleave(per_clip)  # (B * k,)
        drawn = video[clips, :, picks.to(video.device).reshape(-1)].detach()  # (B * k, 3, H, W)
        if pool_size == 0:
            return drawn.unsqueeze(2)
        key = tuple(video.shape[-2:])
        if key not in self._image_pools:  # a ring buffer per frame size: no copy of the pool per step
            self._image_pools[key] = [drawn.new_empty((pool_size, *drawn.shape[1:])), 0]  # (pool, 3, H, W), written
        pool, written = self._image_pools[key]
        fresh = drawn[-pool_size:]
        slots = torch.arange(written, written + len(fresh), device=pool.device) % pool_size  # the oldest frames go
        pool[slots] = fresh
        self._image_pools[key][1] = written = written + len(fresh)
        index = random.shared(lambda g: torch.randint(min(written, pool_size), (count,), generator=g, device=g.device))
        return pool[index.to(pool.device)].unsqueeze(2)  # (B * k, 3, 1, H, W)

    def loss_scales(self) -> dict[str, float]:
        """This step's multipliers of the loss weights. The KL term is off while the decoder gets posterior
        means (``vae_training.deterministic_steps``), then ramps linearly to its weight over
        ``vae_training.kl_warmup_steps`` (KL annealing). Off means off, not small: under Adam even a tiny KL
        weight moves the log-variance head, which nothing else trains in that phase, at the full learning
        rate, so the posterior noise would grow unseen and swamp the latents when sampling starts."""
        if "kl" not in self.losses.terms:
            return {}
        since = self.global_step - int(self.training_cfg.get("deterministic_steps", 0) or 0)
        warmup = int(self.training_cfg.get("kl_warmup_steps", 0) or 0)
        if since < 0:
            return {"kl": 0.0}
        return {"kl": min(1.0, (since + 1) / warmup)} if warmup > 0 else {}

    def reconstruct(self, video: torch.Tensor, random: BatchRandomness) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """Encode, sample, maybe noise the latents (denoising decoder), decode; draws come from ``random``.

        Before ``vae_training.deterministic_steps`` the decoder gets the posterior means (a deterministic
        warm-up: the latents learn to carry the video before the posterior noise joins); before
        ``vae_training.denoise_start_step`` no sample is noised for the denoising decoder."""
        posterior = self.vae.encode(video)
        noise = random.normal(tuple(posterior.mean.shape)).to(posterior.mean)
        step = self.global_step
        sampled = step >= int(self.training_cfg.get("deterministic_steps", 0) or 0)
        latents = posterior.mean + posterior.std * noise if sampled else posterior.mean
        timestep = torch.zeros(video.shape[0], device=video.device)
        if self.vae.config.timestep_conditioning:
            probability, max_t = self.training_cfg.denoise_probability, self.training_cfg.max_denoise_timestep
            drawn = random.rows(lambda n, g: decoder_timesteps(n, probability, max_t, g, g.device)).to(video.device)
            denoising = step >= int(self.training_cfg.get("denoise_start_step", 0) or 0)
            timestep = drawn if denoising else timestep
            latents = noise_latents(latents, timestep, random.normal(tuple(latents.shape)).to(latents))
        return self.vae.decode(latents, timestep), posterior, timestep

    def gan_weight(self, reconstruction_loss: torch.Tensor, generator_loss: torch.Tensor) -> torch.Tensor:
        weight = torch.tensor(float(self.gan_cfg.weight), device=generator_loss.device)
        if self.gan_cfg.get("adaptive_weight", False):
            last_layer = self.vae.decoder.conv_out.conv.weight
            weight = weight * adaptive_gan_weight(reconstruction_loss, generator_loss, last_layer)
        return weight

    def step_optimizer(self, optimizer: Any, scheduler: Any, loss: torch.Tensor, module: torch.nn.Module,
                       count_step: bool = True) -> None:
        """Backward, clip, step ``optimizer``, then its lr ``scheduler`` (Lightning steps neither under
        manual optimisation, but checkpoints and restores both)."""
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        clip = self.training_cfg.get("gradient_clip")
        if clip:
            torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        (optimizer if count_step else optimizer.optimizer).step()
        scheduler.step()

    # ---- validation -----------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_index: int) -> None:
        video = batch["video"]  # (B, 3, F, H, W)
        posterior = self.vae.encode(video)
        reconstruction = self.vae.decode(posterior.mean, 0.0 if self.vae.config.timestep_conditioning else None)
        original01 = ((video + 1) / 2).clamp(0, 1).transpose(1, 2).flatten(0, 1)  # (B*F, 3, H, W)
        reconstruction01 = ((reconstruction + 1) / 2).clamp(0, 1).transpose(1, 2).flatten(0, 1)
        self.val_psnr.update(reconstruction01, original01)
        self.val_ssim.update(reconstruction01, original01)
        self.log_dict({"val/psnr": self.val_psnr, "val/ssim": self.val_ssim}, batch_size=video.shape[0])
        if self.validation_lpips is not None:
            self.val_lpips.update(self.validation_lpips(reconstruction, video))
            self.log("val/lpips", self.val_lpips, batch_size=video.shape[0])
        previews = self.training_cfg.get("num_preview_samples", 2)
        if previews and batch_index == 0 and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self.write_previews(video, reconstruction)

    def write_previews(self, video: torch.Tensor, reconstruction: torch.Tensor) -> None:
        count = self.training_cfg.get("num_preview_samples", 2)
        directory = Path(self.cfg.run_dir) / "previews"
        _, _, grid = write_previews(video[:count], reconstruction[:count], directory, f"step_{self.global_step:07d}")
        log_image(self.loggers, "val/reconstruction", grid, self.global_step)

    def export_weights(self, state_dict: dict[str, torch.Tensor], path: Path) -> None:
        """Write the VAE with ``state_dict`` (e.g. the gathered EMA weights) in the diffusers layout; a VAE
        that layout cannot describe (per-channel log-variance) in our own (``export_vae_native``), with a warning."""
        config = self.vae.config
        model = rebuild_with_weights(lambda: VideoAutoencoder(config), state_dict)
        if vae_diffusers_can_describe(config):
            export_vae(model, path)
            log.info("exported VAE weights to %s", path)
        else:
            export_vae_native(model, path)
            log.warning("diffusers' VAE always shares one log-variance channel; exported the VAE weights to %s in "
                        "our layout (vae.safetensors + ltx_vae_config.json)", path)
