"""The tiny digits scenario shared by the strategy, driver and runner tests (3 tasks x 2 classes, 1 epoch,
a 32-unit MLP, one class request after each task from the 2nd on)."""

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
