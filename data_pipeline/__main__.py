"""``python -m data_pipeline input=DIR_OR_LIST output=DIR [overrides]``: curate raw videos into shards.

Stages and their settings come from ``conf/curate.yaml`` and its ``curation/<stage>`` groups;
``launcher=local`` (a process pool of ``workers``), ``launcher=slurm`` (submitit array tasks, each
owning the work shards whose index modulo the task count is its rank) or ``launcher=submitit_local``
(the same through submitit's local executor). Rerun the same command to resume.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from data_pipeline.report import write_report
from data_pipeline.runner import list_inputs, run_task
from ltx.cli.train import CONFIG_DIR

log = logging.getLogger(__name__)


def _task(container: dict, rank: int, num_tasks: int) -> list[str]:
    """One array task (runs in a submitit job)."""
    return run_task(OmegaConf.create(container), rank, num_tasks)


def run(cfg: DictConfig) -> dict:
    """Curate with the configured launcher, then write the report; returns it."""
    output = Path(cfg.output)
    launcher = cfg.get("launcher_name", "local")
    if launcher == "local":
        run_task(cfg, 0, 1)
    elif launcher in ("slurm", "submitit_local"):
        import submitit

        cluster = "local" if launcher == "submitit_local" else "slurm"
        executor = submitit.AutoExecutor(folder=str(output / ".submitit" / "%j"), cluster=cluster)
        parameters = {k: v for k, v in dict(cfg.submitit.parameters).items() if v is not None}
        if cluster == "local":  # the local executor takes only the generic parameters
            parameters = {k: v for k, v in parameters.items() if not k.startswith("slurm_")}
        executor.update_parameters(**parameters)
        tasks = int(cfg.submitit.num_tasks)
        container = OmegaConf.to_container(cfg, resolve=True)
        jobs = executor.map_array(_task, [container] * tasks, list(range(tasks)), [tasks] * tasks)
        for job in jobs:
            job.result()  # raises with the task's traceback if a task failed
    else:
        raise ValueError(f"unknown launcher {launcher!r}; valid: local, slurm, submitit_local")
    report = write_report(output, expected_inputs=len(list_inputs(cfg.input)))
    print(f"{report['inputs']} inputs -> {report['clips_written']} clips in {report['shards']} shards, "
          f"{report['rejections']} rejections {report['rejections_by_reason']}; report in {output / 'report.json'}")
    return report


@hydra.main(config_path=str(CONFIG_DIR), config_name="curate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
