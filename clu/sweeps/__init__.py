"""``clu sweep``: scenarios × strategies × seeds, on Ray Tune (locally or on a cluster) or serially.

What a sweep is
    One **trial** per (scenario, strategy, seed), plus one **oracle trial** (``retrain``) per (scenario, seed)
    (:mod:`clu.sweeps.plan`). A trial runs :func:`clu.runner.run` for that one strategy into its own run folder
    ``OUT/trials/<scenario>/<strategy>/seed-<n>/`` (checkpoints and plots off), so each trial folder is an
    ordinary run folder (``clu plot`` and ``clu audit`` work on it). Strategy trials do **not** rerun the
    oracle: the runner, given a config without ``retrain``, writes its gap rows empty, and the sweep drops them.
    Gaps are joined at aggregation instead (:mod:`clu.sweeps.aggregate`): each strategy's per-event values are
    paired with the oracle trial's values of the same (scenario, seed, step) and :func:`clu.summary.with_gaps`
    gives ``<metric>_gap`` and ``AvgGap`` — the very numbers ``clu run`` computes in one process. The oracle
    runs exactly once per (scenario, seed); its own gaps are 0, as in ``clu run``. There is no ordering between
    oracle and strategy trials (oracle trials are merely queued first).

    **KL** (to the oracle's softmax on the forgotten data) is left out of sweeps: it needs both models'
    probabilities, which a run folder does not keep. Use ``clu run`` for KL.

Executors (:mod:`clu.sweeps.executors`)
    ``ray`` (default): one Ray Tune trial per trial above, ``tune.grid_search`` over the explicit trial list
    (each entry names scenario, strategy and seed; the seed is an explicit axis of that list), resources
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
    attempt in a wiped trial folder. A trial still failing is reported by name (``scenario/strategy/seed``)
    on stderr and in ``sweep_summary.json`` with its attempts and last error (its traceback stays in the
    trial folder's ``error.txt``); the exit status is then 1, and every other trial is still aggregated.
    A strategy that diverges (NaN loss) is not an error of the trial: it is deterministic, so it is not
    retried; its rows up to that event are kept, it is listed under ``diverged`` and the exit status is 1.
    A trial is *finished* when its folder holds ``done.json``, written last and atomically, whose
    ``fingerprint`` (a hash of the trial's resolved config and thread count) matches. ``--resume`` reuses
    ``--out`` and runs only the unfinished trials (a trial folder without a valid marker is wiped and rerun);
    without ``--resume`` a non-empty ``--out`` is refused. Tests inject failures with the request's
    ``fail_trials`` (it travels to the workers with the trials and is recorded in ``sweep.json`` when set).

Outputs (all written atomically; the schema is :mod:`clu.results`)
    ``results.csv``    scenario, strategy, seed, step, event_kind, metric, value — every trial's rows (value
                       empty = n/a), with the joined ``<metric>_gap``/``AvgGap`` rows, per-event ``time_s``,
                       and the whole-run rows (step ``final``, kind ``run``): AIA, BWT, Forgetting,
                       AvgGap_mean, unlearn_time_vs_oracle, time_s.
    ``aggregate.csv``  scenario,strategy,step,event_kind,metric,mean,std,n — over seeds; ``std`` is the sample
                       standard deviation (ddof=1), empty when n < 2; ``n`` counts seeds where the metric
                       applies.
    ``table.md``       :func:`clu.report.sweep_table` (``clu report OUT`` prints it again from the files).
    ``plots/``         :func:`clu.plots.plot_sweep`: stability–plasticity and FA over events with ± std bands.
    ``sweep.json`` (the request), ``sweep_summary.json`` (trials, failures, timings, outputs), ``tune/``.

Progress: one line per finished trial on stderr (:mod:`clu.sweeps.progress`).
"""

from clu.sweeps.plan import SweepPlan, SweepRequest, Trial, plan_sweep
from clu.sweeps.run import SweepResult, run_sweep, sweep

__all__ = ["SweepPlan", "SweepRequest", "SweepResult", "Trial", "plan_sweep", "run_sweep", "sweep"]
