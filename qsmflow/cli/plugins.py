"""Nipype execution plugins: their arguments, per-node cluster requests, and what a run's
end means for each."""

from __future__ import annotations

import getpass
import os

from qsmflow.bids.errors import QSMUsageError

from .config import Config

# Submit every node at once, with dependencies, and return without waiting for the jobs.
GRAPH_PLUGINS = ("SLURMGraph", "PBSGraph")
SLURM_PLUGINS = ("SLURM", "SLURMGraph")
# How often MultiProc looks for finished nodes. Nipype's default, 2 s, made each node of a
# participant's chain of about 15 wait up to 2 s after its inputs were ready (~20 s of a 142 s
# run, issue 15); a local poll is cheap. Cluster plugins keep 2 s: each poll runs squeue/qstat.
LOCAL_POLL_INTERVAL_S = 0.05


def _nodes(workflow):
    return [workflow.get_node(name) for name in workflow.list_node_names()]


def plugin_arguments(config: Config, workflow, status_callback) -> dict:
    """Nipype's ``plugin_args`` for this run; also sets the nodes' own cluster requests.

    * Local and non-graph cluster plugins report each node to ``status_callback``
      (Nipype's graph plugins cannot).
    * MultiProc gets ``--nprocs`` and ``--mem-gb``, and polls its workers every
      ``LOCAL_POLL_INTERVAL_S`` (set in the workflow's config); a node that declares more
      memory than ``--mem-gb`` is a usage error here, before anything runs.
    * SLURM plugins: a node that declares several threads (the inversion, with
      ``--omp-nthreads``) asks for as many CPUs with ``--cpus-per-task``, after the
      user's ``sbatch_args``. PBS and SGE have no portable syntax for it: give it in
      ``qsub_args``.
    """
    plugin_args = dict(config.plugin_args)
    if config.plugin not in GRAPH_PLUGINS:
        plugin_args["status_callback"] = status_callback
    if config.plugin == "MultiProc":
        plugin_args["n_procs"] = config.nprocs
        workflow.config["execution"]["poll_sleep_duration"] = LOCAL_POLL_INTERVAL_S
        if config.mem_gb:
            plugin_args["memory_gb"] = config.mem_gb
            too_big = {n.fullname: n.mem_gb for n in _nodes(workflow)
                       if n.mem_gb > config.mem_gb}
            if too_big:
                need = max(too_big.values())
                raise QSMUsageError(
                    f"--mem-gb {config.mem_gb:g} is less than the {need:g} GB that node(s) "
                    f"{', '.join(sorted(too_big))} need. Give --mem-gb {need:g} or more.")
    if config.plugin in SLURM_PLUGINS:
        # Nipype's SLURM plugins name jobs after $LOGNAME, which batch and container
        # environments may lack.
        if not os.environ.get("LOGNAME"):
            os.environ["LOGNAME"] = _user_name()
        for node in _nodes(workflow):
            if node.n_procs > 1:
                request = f"--cpus-per-task={node.n_procs}"
                own = node.plugin_args.get("sbatch_args", "")
                node.plugin_args = {**node.plugin_args,
                                    "sbatch_args": f"{own} {request}".strip()}
    return plugin_args


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no passwd entry, as in some containers
        return str(os.getuid())


def single_threaded_torch() -> None:
    """Keep torch to one thread in this (the scheduling) process.

    qsmflow loads the NSIDL weights here to check them before anything runs. If torch
    ran a multi-threaded (OpenMP) operation here, MultiProc's workers, forked from this
    process, would inherit its thread pool without its threads, and a worker that then
    asks for several threads (NSIDL with ``--omp-nthreads`` > 1) would wait for them
    forever. With one thread here, no pool exists to inherit.
    """
    import torch

    torch.set_num_threads(1)
