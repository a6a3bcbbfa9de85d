"""core: the leaves every package may import.

Owns the named errors and their HTTP statuses (`errors`), the clock (`clock`,
the only code that reads the wall clock), log set-up and the fields that name
an object (`logs`), and the process's Prometheus metrics (`metrics`).

May import: nothing of lambdaop (the standard library, prometheus-client and
python-json-logger only).
"""
