"""core: the leaves every package may import.

Owns the named errors and their HTTP statuses (`errors`), the clock (`clock`:
the loop, the writer, the invoker and the service take their time from it; the
store reads the wall clock only to stamp ids and housekeeping), log set-up and the fields that name
an object (`logs`), the process's Prometheus metrics (`metrics`), label
selectors (`labels`) and the places of limit keys as values (`places`).

May import: nothing of lambdaop (the standard library, prometheus-client and
python-json-logger only).
"""
