"""Package data: the ready scenario files, installed as ``clu.scenarios`` (see ``clu/paths.py``)."""
