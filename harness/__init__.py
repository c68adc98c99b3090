"""The test and benchmark harness: fault injection, audits, races, benchmark runs. Never shipped: nothing
under ``src/`` imports it; tests reach it through pytest's ``pythonpath`` and benchmark scripts put the
repository root on ``sys.path``."""
