"""The FSDP2 strategy: Lightning's ``ModelParallelStrategy`` with every rank of every node in the
data-parallel (sharding) dimension. Lightning's ``auto`` sizes would put the processes of a node in a
tensor-parallel dimension, which these models do not use."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import ModelParallelStrategy


class FullyShardedStrategy(ModelParallelStrategy):
    """FSDP2 over all ranks (``configure_model`` of the stage applies ``fully_shard``); checkpoints are
    distributed (one shard file per rank) unless ``save_distributed_checkpoint=False``."""

    def __init__(self, **kwargs: Any):
        for name in ("data_parallel_size", "tensor_parallel_size"):
            if name in kwargs:
                raise ValueError(f"{name} is derived from the world size; remove it from trainer.strategy")
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1, **kwargs)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()
