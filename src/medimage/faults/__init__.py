"""Seeded AWS faults at the botocore level (errors, throttling, timeouts after the write, crashes)."""

from medimage.faults.injector import FaultInjector, FunctionCrashed, SimulatedCrash
from medimage.faults.plan import CrashRule, FaultKind, FaultRule, RecordedCall, RecordedFault

__all__ = [
    "CrashRule",
    "FaultInjector",
    "FaultKind",
    "FaultRule",
    "FunctionCrashed",
    "RecordedCall",
    "RecordedFault",
    "SimulatedCrash",
]
