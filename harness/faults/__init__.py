"""Seeded AWS faults at the botocore level (errors, throttling, timeouts after the write, crashes).

The package re-exports nothing: callers import from the module that defines a name (``injector``,
``plan``, ``audit``, ``races``, ``trainer``), so importing one never loads the others."""
