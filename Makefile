# LTX-Video training framework. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
DEMO_DIR ?= outputs/demo
DEMO_VAE = $(DEMO_DIR)/vae_run/checkpoints/last.ckpt
DEMO_STATS = $(DEMO_DIR)/latent_stats.safetensors
DEMO_CLIPS ?= 3000
DEMO_VAE_STEPS ?=   # empty: vae_demo's 3,000 (15-minute demo); 6000 passes the VAE and shape targets (~27 min, estimated)
GPU_CHECK_OUT ?= outputs/gpu-check
DEMO_SAMPLE = frames=17 height=64 width=64 num_steps=20
TEST_WORKERS ?= 2  # pytest-xdist processes for make test (whole files per worker, see tests/conftest.py); 0: one process

.DEFAULT_GOAL := help
.PHONY: help venv test lint demo report-card data latents train-vae train-dit sample convert reconstruct latent-stats bench bench-quick memory-plan gpu-check gpu-wheels ablations ablations-quick registry clean

help: ## List the targets with one line each
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-12s %s\n", $$1, $$2}'

# The environment is rebuilt only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir --upgrade pip
	$(PY) -m pip install --quiet --no-cache-dir -e '.[dev,slurm]'
	@touch $(STAMP)

venv: $(STAMP) ## Create or update the virtual environment in .venv (idempotent)

test: $(STAMP) ## Lint, then run the test suite (TEST_WORKERS=2 processes, whole test files per process)
	$(VENV)/bin/ruff check ltx data_pipeline tests benchmarks experiments
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

lint: $(STAMP) ## Lint with ruff
	$(VENV)/bin/ruff check ltx data_pipeline tests benchmarks experiments

demo: $(STAMP) ## Run the system end to end on the demo data into DEMO_DIR: curation, VAE, latent statistics, latents, DiT, samples, report card (CPU, ~15 min)
	$(PY) -m data_pipeline.demo --output $(DEMO_DIR) --clip-size 64 --train-clips $(DEMO_CLIPS)
	$(PY) -m data_pipeline demo_dir=$(DEMO_DIR) input=$(DEMO_DIR)/train_sources.txt output=$(DEMO_DIR)/curated
	$(PY) -m ltx.data.inspect $(DEMO_DIR)/curated/shards --batches 6
	$(PY) -m ltx.cli.train --config-name train_vae experiment=vae_demo demo_dir=$(DEMO_DIR) run_dir=$(DEMO_DIR)/vae_run \
		$(if $(DEMO_VAE_STEPS),trainer.max_steps=$(DEMO_VAE_STEPS))
	$(PY) -m ltx.cli.reconstruct $(DEMO_DIR)/sources/red_circle_stripes.mp4 $(DEMO_DIR)/reconstruction.mp4 \
		--checkpoint $(DEMO_VAE) --frames 17 --side-by-side
	$(PY) -m ltx.cli.latent_stats data=demo_world demo_dir=$(DEMO_DIR) checkpoint=$(DEMO_VAE) output=$(DEMO_STATS) \
		run_dir=$(DEMO_DIR)/logs/latent_stats
	$(PY) -m ltx.cli.precompute data=demo_world demo_dir=$(DEMO_DIR) vae_checkpoint=$(DEMO_VAE) \
		model.vae.latent_stats=$(DEMO_STATS)
	$(PY) -m ltx.cli.train --config-name train_dit experiment=dit_demo demo_dir=$(DEMO_DIR) run_dir=$(DEMO_DIR)/dit_run \
		vae_checkpoint=$(DEMO_VAE) model.vae.latent_stats=$(DEMO_STATS)
	$(PY) -m ltx.cli.sample checkpoint=$(DEMO_DIR)/dit_run/checkpoints/last.ckpt output=$(DEMO_DIR)/sample.mp4 $(DEMO_SAMPLE) \
		vae_checkpoint=$(DEMO_VAE) latent_stats=$(DEMO_STATS) run_dir=$(DEMO_DIR)/logs/sample
	$(PY) -m ltx.cli.sample checkpoint=$(DEMO_DIR)/dit_run/checkpoints/last.ckpt output=$(DEMO_DIR)/sample_i2v.mp4 \
		$(DEMO_SAMPLE) image=$(DEMO_DIR)/sources/image_red_square.png vae_checkpoint=$(DEMO_VAE) \
		latent_stats=$(DEMO_STATS) run_dir=$(DEMO_DIR)/logs/sample
	$(PY) -m ltx.cli.report_card $(DEMO_DIR) --num-steps 20
	@echo "demo outputs in $(DEMO_DIR): sources/, curated/ (shards, report.json, rejects.jsonl), val/,"
	@echo "  vae_run/ (VAE: checkpoints, previews, csv), reconstruction.mp4, latent_stats.safetensors,"
	@echo "  latents/ (each shard's stats JSON records the VAE and statistics), dit_run/ (DiT: checkpoints,"
	@echo "  samples, csv), sample.mp4, sample_i2v.mp4, logs/, report_card.{json,md}, contact_sheet.png"

report-card: $(STAMP) ## Score the demo's VAE and DiT against their targets -> DEMO_DIR/report_card.{json,md}, contact_sheet.png
	$(PY) -m ltx.cli.report_card $(DEMO_DIR) $(ARGS)

data: $(STAMP) ## Curate raw videos into shards (ARGS="input=DIR output=DIR ..."; default: the demo sources)
	$(if $(ARGS),,$(PY) -m data_pipeline.demo --output $(DEMO_DIR))
	$(PY) -m data_pipeline $(if $(ARGS),$(ARGS),input=$(DEMO_DIR)/train_sources.txt output=$(DEMO_DIR)/curated)

train-vae: $(STAMP) ## Train the Video-VAE (no ARGS: the demo's recipe on the demo world, after `make demo`; else Hydra overrides)
	$(PY) -m ltx.cli.train --config-name train_vae $(if $(ARGS),$(ARGS),experiment=vae_demo demo_dir=$(DEMO_DIR))

sample: $(STAMP) ## Generate a video from the latest DiT checkpoint (PROMPT="...", CHECKPOINT=path; IMAGE= LAST_IMAGE= frames, VIDEO= with MASK=, OUTPAINT=0.6 or VIDEO_FRAMES=[0,1], REFERENCE= (IC-LoRA), LORA=file [LORA_SCALE=1.0])
	$(PY) -m ltx.cli.sample $(if $(PROMPT),prompt="$(PROMPT)") $(if $(IMAGE),image="$(IMAGE)") $(if $(CHECKPOINT),"checkpoint='$(CHECKPOINT)'") $(if $(LORA),"lora='$(LORA)'") $(if $(LORA_SCALE),lora_scale=$(LORA_SCALE)) $(if $(LAST_IMAGE),"last_image='$(LAST_IMAGE)'") $(if $(VIDEO),"video='$(VIDEO)'") $(if $(MASK),"mask='$(MASK)'") $(if $(OUTPAINT),outpaint=$(OUTPAINT)) $(if $(VIDEO_FRAMES),"video_frames=$(VIDEO_FRAMES)") $(if $(REFERENCE),"reference='$(REFERENCE)'") $(ARGS)

convert: $(STAMP) ## Convert a (distributed) checkpoint: CHECKPOINT=path OUT=dir -> single file, safetensors, diffusers
	@test -n "$(CHECKPOINT)" -a -n "$(OUT)" || { echo "usage: make convert CHECKPOINT=path/to/x.ckpt OUT=dir [ARGS=--weights trained]"; exit 2; }
	$(PY) -m ltx.cli.convert_checkpoint "$(CHECKPOINT)" "$(OUT)" $(ARGS)

reconstruct: $(STAMP) ## Reconstruct a video through a VAE (ARGS="IN.mp4 OUT.mp4 --checkpoint CKPT")
	$(PY) -m ltx.cli.reconstruct $(ARGS)

latent-stats: $(STAMP) ## Per-channel latent statistics over shards (ARGS="checkpoint=CKPT output=FILE")
	$(PY) -m ltx.cli.latent_stats $(ARGS)

latents: $(STAMP) ## Precompute latent shards for DiT training (ARGS: Hydra overrides of conf/precompute.yaml)
	$(PY) -m ltx.cli.precompute $(ARGS)

train-dit: $(STAMP) ## Train the DiT (no ARGS: the demo's recipe on the demo world's latents, after `make demo`; else Hydra overrides)
	$(if $(ARGS),,$(PY) -m ltx.cli.precompute data=demo_world demo_dir=$(DEMO_DIR) vae_checkpoint=$(DEMO_VAE) \
		model.vae.latent_stats=$(DEMO_STATS))
	$(PY) -m ltx.cli.train --config-name train_dit $(if $(ARGS),$(ARGS),experiment=dit_demo demo_dir=$(DEMO_DIR) \
		vae_checkpoint=$(DEMO_VAE) model.vae.latent_stats=$(DEMO_STATS))

bench: $(STAMP) ## Benchmarks vs diffusers and the machine's GEMM peak -> benchmarks/results/<date>.json + .md (~10 min CPU)
	$(PY) -m benchmarks $(ARGS)

bench-quick: $(STAMP) ## A smoke run of the benchmarks (small sizes) -> outputs/bench-quick/
	$(PY) -m benchmarks --quick --out outputs/bench-quick $(ARGS)

memory-plan: $(STAMP) ## Bytes per GPU of full and LoRA fine-tuning of the 2B / 13B DiTs at 121x768x512 under FSDP2 (benchmarks/results/memory_plan.md)
	$(PY) -m benchmarks.memory_plan --out benchmarks/results $(ARGS)

gpu-check: $(STAMP) ## The prepared GPU check (CUDA, ~8 min): DiT/VAE vs diffusers, 2B bf16 steps, FSDP2, sampling -> GPU_CHECK_OUT (ARGS=--dry-run: CPU)
	$(PY) -m benchmarks.gpu_check --out $(GPU_CHECK_OUT) $(ARGS)

gpu-wheels: $(STAMP) ## Download the wheels the lent GPU machine lacks into .whl/ and print the device command (benchmarks/README.md)
	$(PY) -m benchmarks.gpu_wheels --dest .whl

ablations: $(STAMP) ## The paper's ablations at 1:192 on the demo recipes, 3 seeds -> experiments/<name>/results.md + plots (hours on 2 CPU cores, runs cached: experiments/README.md; ARGS="rope_spacing ...")
	$(PY) -m experiments $(ARGS)

ablations-quick: $(STAMP) ## Every ablation for a few steps (what the test suite runs) -> outputs/experiments-quick/
	$(PY) -m experiments --quick $(ARGS)

registry: $(STAMP) ## Print every registry and its entries
	$(PY) -m ltx.registry

clean: ## Remove build outputs (keeps .venv)
	rm -rf outputs .pytest_cache .ruff_cache build *.egg-info
