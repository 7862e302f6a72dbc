"""Runtime guardrail: a policy-violation classifier with a threshold calibrated to a target
false-positive rate, a held-out FP/FN report, and input/output rails around a model.

    from alignkit.guard import Guard
    guard = Guard.load("runs/guard")
    guard.score(["How do I burn down the mill?"])   # -> [0.97...]
    guard.flags(["How do I bake bread?"])           # -> [False]

See docs/guard.md. Importing this package does not import torch (only training does).
"""
from alignkit.guard.calibrate import Calibration, calibrate
from alignkit.guard.rails import GuardedResponder, guarded_respond
from alignkit.guard.runtime import Guard

__all__ = ["Calibration", "Guard", "GuardedResponder", "calibrate", "guarded_respond"]
