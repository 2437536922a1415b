"""``clu tune``: choose a strategy's unlearning settings on tuning streams, from validation data only (DESIGN §13).

What a search is
    A space file (:mod:`clu.tune.space`) names a strategy (registry name or preset) and one distribution per
    searched field of its config: ``choice``, ``uniform``, ``loguniform`` (4 significant digits) or ``randint``
    (both ends included). The learner's settings (``lr``, ``momentum``, ``weight_decay``) are fixed by the
    scenario and refused. ``budget`` configurations are drawn up front by a seeded sampler: configuration 0 is
    the starting config (so the tuned result is never worse on the objective than the start), then
    ``budget - 1`` distinct draws; the same file and ``sampler_seed`` give the same configurations.

How it runs
    One sweep (:mod:`clu.sweeps`, same trial function and executors, serial or Ray) over the tuning scenarios ×
    tuning seeds with one strategy per configuration (label ``<name>-c00``, ...), replicas 1, ``shadows`` 0 by
    default, and ``split = "validation"``: TA is measured on the validation samples of retained classes and
    the MIA/LiRA non-members are validation samples, so tuning never reads the test split. The oracle and its
    twin are shared by all configurations. Tuning seeds that overlap the reporting seeds (0–9 by default) are
    refused.

Objective
    ``AvgGap_req`` (whole-run request-only AvgGap, :func:`clu.summary.request_figures`) averaged over the tuning
    scenarios and seeds; lower is better, ties go to the lower index; a configuration with a failed or diverged
    trial scores +inf.

Outputs (in OUT, a sweep folder: ``clu report OUT`` works on it)
    ``configs/c00.toml``… (each configuration's preset), ``tune.json`` (space, budget, sampler seed, scenarios,
    seeds, objective and its definition, every configuration with values and objectives, the chosen index),
    ``tune.csv`` (one row per configuration) and the chosen preset (default ``OUT/<name>-tuned.toml``) whose
    comment header records the space, budget, tuning seeds and scenarios, objective (best and start), date and
    the command that redoes the search.
"""

from clu.tune.run import TuneRequest, TuneResult, tune
from clu.tune.space import SearchSpace, load_space, sample

__all__ = ["SearchSpace", "TuneRequest", "TuneResult", "load_space", "sample", "tune"]
