"""The portal's tests; ``tests.plugin`` sets up each run (see its docstring)."""
