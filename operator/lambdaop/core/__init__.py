"""core: the leaves every package may import.

Owns the named errors and their HTTP statuses (`errors`), the clock (`clock`,
the only code that reads the wall clock), log set-up and the fields that name
an object (`logs`), the process's Prometheus metrics (`metrics`), label
selectors (`labels`) and the places of limit keys as values (`places`).

May import: nothing of lambdaop (the standard library, prometheus-client and
python-json-logger only).
"""
