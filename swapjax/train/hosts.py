"""Multi-process runs: starting `jax.distributed`, global batches from per-process data, agreeing on signals.

`initialize_distributed()` starts `jax.distributed` when the environment describes a multi-process job:
- explicitly, through `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` (what the tests and a
  hand-started job on several machines set; `JAX_LOCAL_DEVICE_IDS` is passed on if present);
- or as detected by JAX itself (Cloud TPU pod slices, SLURM with several tasks, Open MPI).
A single-process run is left alone. Each process then reads its own shard of the data
(`swapjax.data.pipeline`, shard = process index) and `global_batch` assembles the global arrays.
"""

from __future__ import annotations

import os
from typing import Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils

from swapjax.parallel import logical_spec


def _detected_cluster() -> bool:
    """True when a cluster JAX knows how to join is visible (TPU pod worker list, SLURM tasks, Open MPI)."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 or int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return True
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return "," in hosts


def initialize_distributed(timeout_s: int = 300) -> bool:
    """Starts `jax.distributed` for a multi-process environment (see module docstring); True if it did."""
    if jax.distributed.is_initialized():
        return True
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if address:
        num = int(os.environ["JAX_NUM_PROCESSES"])
        pid = int(os.environ["JAX_PROCESS_ID"])
        local = os.environ.get("JAX_LOCAL_DEVICE_IDS")
        jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid,
                                   local_device_ids=[int(i) for i in local.split(",")] if local else None,
                                   initialization_timeout=timeout_s)
        return True
    if _detected_cluster():
        jax.distributed.initialize(initialization_timeout=timeout_s)
        return True
    return False


def batch_sharding(mesh: jax.sharding.Mesh, ndim: int) -> jax.sharding.NamedSharding:
    """The sharding of a `[B, ...]` batch array: B over the mesh axes the rules give `batch`, the rest whole."""
    return jax.sharding.NamedSharding(mesh, logical_spec(("batch",) + (None,) * (ndim - 1)))


def global_batch(local: Mapping[str, np.ndarray], mesh: jax.sharding.Mesh, keys: tuple[str, ...]
                 ) -> dict[str, jax.Array]:
    """This process's rows of a batch -> global arrays sharded over the batch axes (`keys` selects the arrays)."""
    return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(local[k])), np.asarray(local[k]))
            for k in keys if k in local}


def any_process(flag: bool) -> bool:
    """True on every process if `flag` is True on any (e.g. one of them received SIGTERM)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.asarray(multihost_utils.process_allgather(np.int32(flag))).any())
