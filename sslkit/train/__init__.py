"""Training: ``fit()``, its History, callbacks, schedules and checkpoints.

    history = sslkit.fit(method, ds, minutes=2, callbacks=[LivePlot()])
    history = sslkit.fit(method, ds, steps=2000, checkpoint="runs/simclr.pt")
    history = sslkit.fit(method, ds, steps=4000, resume="runs/simclr.pt")   # continue exactly
    method = sslkit.train.load_method("runs/simclr.pt")                       # for evaluation
"""
from sslkit.train.callbacks import (
    Callback, CollapseMonitor, CollapseWarning, KNNMonitor, LivePlot, TrainState)
from sslkit.train.checkpoint import (
    CheckpointError, CheckpointWarning, load_checkpoint, load_method, save_checkpoint)
from sslkit.train.fit import fit
from sslkit.train.history import History
from sslkit.train.schedules import StepBudget, WarmupCosine

__all__ = ["fit", "History", "Callback", "TrainState", "LivePlot", "KNNMonitor", "CollapseMonitor",
           "CollapseWarning", "save_checkpoint", "load_checkpoint", "load_method", "CheckpointError",
           "CheckpointWarning",
           "WarmupCosine", "StepBudget"]
