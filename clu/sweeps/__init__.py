"""``clu sweep``: scenarios × strategies × seeds × replicas, on Ray Tune (locally or on a cluster) or serially.

What a sweep is
    One **trial** per **unit** (:func:`clu.runconfig.plan_units`; :mod:`clu.sweeps.plan`): per (scenario, seed,
    replica k = 1..R) the oracle (``retrain``), its twin (``retrain (twin)``: the oracle's initial weights,
    its own batch order — the noise floor) and each strategy, plus per (scenario, seed) the extra shadow
    oracles of the LiRA attack (K − (R − 1) of them when the other replicas' oracles do not suffice; K is
    ``--shadows`` or the scenario's ``[evaluation] shadows``). Replicas parallelise like seeds. A trial runs
    :func:`clu.runner.run` with its one unit into its own run folder
    ``OUT/trials/<scenario>/<safe label>/seed-<n>[-r<k>]/`` (``-r<k>`` for replica k > 1; ``retrain-twin``,
    ``retrain-shadow-<j>``; checkpoints and plots off), so each trial folder is an ordinary run folder
    (``clu plot`` and ``clu audit`` work on it); it measures its own model only and keeps its margins on the
    attack set (``margins/``). Everything that compares models is joined at aggregation
    (:mod:`clu.sweeps.join`): per (scenario, seed) every finished trial's unit is read back and
    :func:`clu.joint.join` — the very function ``clu run`` uses — gives the gaps to the oracle of the same
    replica, ``AvgGap``/``AvgGap_L``, ``KL``, ``LiRA_*`` (now and before each request), ``dAvgGap``, the
    request-only figures and KLoM (replica ``all``; R ≥ 16); so a sweep's numbers equal ``clu run``'s for the
    same scenario, strategies, seed, replicas and shadows. There is no ordering between trials (oracles and
    shadows are merely queued first). A trial's config and fingerprint depend on its unit only, so a
    ``--resume`` with more replicas or shadows reuses the finished trials.

Scenario grids (``--set KEY=V1,V2,...``, :mod:`clu.grid`)
    Each value of a scenario field makes a scenario of its own (several ``--set``: the cartesian product,
    for every scenario given), named ``<scenario>+<field>=<value>...`` (``digits-random-sample+fraction=0.05``):
    that name is its ``scenario`` in every output and its trial folder. The value is written into the file's
    raw table, which is validated like a file (a bad key, index or value: one error naming the file and the
    ``--set`` argument, exit 2, nothing written); each trial's config holds the grid point's resolved scenario,
    so its fingerprint changes with the value, and a ``--resume`` with the same grid reuses the finished trials
    while a changed grid runs its new grid points. ``sweep.json`` records the grid (``grid``: the arguments,
    the axes, each grid point's base scenario and values).

Executors (:mod:`clu.sweeps.executors`)
    ``ray`` (default): one Ray Tune trial per trial above, ``tune.grid_search`` over the explicit trial list
    (each entry names scenario, unit and seed; seed and replica are explicit axes of that list), resources
    ``{"cpu": cpus_per_trial, "gpu": gpus_per_trial}`` per trial, ``FailureConfig(max_failures=retries)``.
    Without ``--address`` a private local Ray instance is started (all CPUs of this machine, no dashboard,
    a 256 MiB object store — trials exchange only small dicts) and shut down at the end. With ``--address``
    the driver connects to an existing cluster: then ``--out`` must be on storage every node sees, and the
    ``clu-sim`` package (and the datasets) must be installed on every node. Trials receive their resolved
    scenario and strategy config as TOML text, so worker nodes need no scenario files.
    ``serial``: the same trial function in this process, one after the other, same retries. Both executors
    set torch's threads *and* the BLAS thread pools (threadpoolctl) to ``max(1, int(cpus_per_trial))``, so
    the two give bit-identical metric values.

Ray settings (DESIGN §3)
    ``RAY_USAGE_STATS_ENABLED=0`` and ``RAY_AUTH_MODE=disabled`` unless already set; ``RAY_CHDIR_TO_TRIAL_DIR=0``
    (Tune passes it on to its workers); all paths absolute. For a local instance ``RAY_TMPDIR`` is
    ``OUT/.ray`` — or, when that path is longer than 36 bytes, ``/tmp/clu-ray-<hash of OUT>``: Ray puts Unix
    sockets ~70 bytes below it and a socket path may not exceed 107 bytes. It is removed after a sweep with
    no failed trial and kept (for the worker logs) otherwise. Tune's own experiment files go to ``OUT/tune/``.
    Ray is imported only by the Ray executor.

Failures, retries, resume
    A trial that raises is retried ``retries`` times (Tune's ``max_failures``; the same loop serially), each
    attempt in a wiped trial folder. A trial still failing is reported by name (``scenario/label/seed[/r<k>]``)
    on stderr and in ``sweep_summary.json`` with its attempts and last error (its traceback stays in the
    trial folder's ``error.txt``); the exit status is then 1, and every other trial is still aggregated.
    A strategy that diverges (NaN loss) is not an error of the trial: it is deterministic, so it is not
    retried; its rows up to that event are kept, it is listed under ``diverged`` and the exit status is 1.
    A trial is *finished* when its folder holds ``done.json``, written last and atomically, whose
    ``fingerprint`` (a hash of the trial's resolved config, unit and thread count) matches. ``--resume`` reuses
    ``--out`` and runs only the unfinished trials (a trial folder without a valid marker is wiped and rerun);
    without ``--resume`` a non-empty ``--out`` is refused. Tests inject failures with the request's
    ``fail_trials`` (it travels to the workers with the trials and is recorded in ``sweep.json`` when set).

Outputs (all written atomically; the schema is :mod:`clu.results`)
    ``results.csv``    scenario, strategy, seed, replica, step, event_kind, metric, value — every reported
                       unit's rows (the oracle, ``retrain (twin)``, the strategies; shadow oracles are no
                       rows; value empty = n/a) as :func:`clu.joint.join` gives them — metrics.csv's rows of
                       ``clu run`` (gaps, KL, LiRA, AvgGap_L, dAvgGap, KLoM with replica ``all``, the
                       whole-run figures) — plus per-event ``time_s`` and the whole-run
                       ``unlearn_time_vs_oracle`` and ``time_s``.
    ``aggregate.csv``  scenario,strategy,step,event_kind,metric,mean,std,ci95,n — over seeds, each seed's
                       replicas averaged first (:func:`clu.sweeps.aggregate.aggregate_rows`).
    ``stats.csv``      the p-values of the paired tests behind the table's marks.
    ``table.md``       :func:`clu.report.sweep_table` (``clu report OUT`` prints it again from the files).
    ``plots/``         :func:`clu.plots.plot_sweep`: stability–plasticity and FA over events with bands; with a
                       grid also :mod:`clu.plots.scaling`'s ``scaling-*.png`` (metrics against the grid values)
                       and ``requests-*.png`` (metrics against the number of requests so far), ± 95 % CI.
    ``sweep.json`` (the request: replicas, each scenario's shadows and the grid included), ``sweep_summary.json``
    (trials, failures, timings, outputs), ``tune/``.

Progress: one line per finished trial on stderr (:mod:`clu.sweeps.progress`).
"""

from typing import TYPE_CHECKING, Any

from clu.sweeps.plan import SweepPlan, SweepRequest, Trial, plan_sweep

if TYPE_CHECKING:
    from clu.sweeps.run import SweepResult, run_sweep, sweep


def __getattr__(name: str) -> Any:
    """The running half (torch, Avalanche, Ray) loads on first use, so a request validates without it."""
    if name in ("SweepResult", "run_sweep", "sweep"):
        from clu.sweeps import run

        return getattr(run, name)
    raise AttributeError(f"module 'clu.sweeps' has no attribute {name!r}")

__all__ = ["SweepPlan", "SweepRequest", "SweepResult", "Trial", "plan_sweep", "run_sweep", "sweep"]
