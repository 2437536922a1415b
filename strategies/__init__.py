"""Package data: the strategy presets (and ``ablations/``), installed as ``clu.presets`` (see ``clu/paths.py``)."""
