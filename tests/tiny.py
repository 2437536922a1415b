"""The tiny digits scenario shared by the strategy, driver and runner tests (3 tasks x 2 classes, 1 epoch,
a 32-unit MLP, one class request after each task from the 2nd on), and a reader of a run's per-event values."""

import csv
from pathlib import Path

from clu.records import FINAL

TINY = """
name = "tiny"
seed = 0
[data]
name = "digits"
[model]
name = "mlp"
hidden = [32]
[split]
n_tasks = 3
classes_per_task = 2
class_order = "natural"
[training]
epochs = 1
batch_size = 32
buffer_size = 50
[[schedule.rules]]
kind = "class"
start_after = 2
"""


def metrics_csv_values(folder: Path) -> dict[tuple[str, int, str], float]:
    """(strategy, step, metric) → value of a run folder's metrics.csv per-event rows that apply."""
    with (folder / "metrics.csv").open() as f:
        return {(r["strategy"], int(r["step"]), r["metric"]): float(r["value"]) for r in csv.DictReader(f)
                if r["step"] != FINAL and r["value"] != ""}
