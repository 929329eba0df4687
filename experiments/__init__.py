"""Small-scale reproductions of the LTX-Video paper's ablations (``python -m experiments``).

Each ablation lives in ``experiments/<name>/``: ``config.yaml`` (its variants as Hydra overrides of
``conf/train_dit.yaml`` or ``conf/train_vae.yaml``, steps, seeds), a README with the hypothesis, the
command and the measured table, and the files a full run writes (``results.json``, ``results.md``,
``<name>.png``). The code here only composes configs, trains through ``ltx.cli.train`` and measures;
no core code is forked.
"""
