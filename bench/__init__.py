"""The benchmarks and the long runs: one scenario a script, each runnable alone.

    .venv/bin/python bench/<script>.py      # or: python -m bench.<script>

bench/harness.py is what they share (the stack, the load generators, the machine line, the
results as data and their one markdown renderer); the process helpers are the tests' own
(tests/support), imported as the package `tests.support`. Run as a file, a script puts the
project folder in place of its own at the head of sys.path, as `python -m bench.<script>`
would have it; imported as `bench.<script>` (by the tests) it changes nothing.
"""
