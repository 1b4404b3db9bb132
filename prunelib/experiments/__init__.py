"""Experiments: run definitions, a cache that knows what code computed each result, the book's
suites, and executors (here, or on Ray). Import the parts from their modules, or the usual names
from here:

    from prunelib.experiments import Run, run, stored, sweep_suite
"""

from .cache import Busy, results_root
from .executors import run_all
from .measurements import outlier_result, sensitivity_result
from .profiles import Profile, get_profile
from .runs import Run, profile_root, run, stored
from .suites import SUITES, SWEEP_SPARSITIES, allocation_suite, quantization_suite, sensitivity_suite, sweep_suite

__all__ = ["SUITES", "SWEEP_SPARSITIES", "Busy", "Profile", "Run", "allocation_suite", "get_profile", "outlier_result", "profile_root",
           "quantization_suite", "results_root", "run", "run_all", "sensitivity_result", "sensitivity_suite",
           "stored", "sweep_suite"]
