"""loop: the reconcile loop that drives every object to a final state.

Owns the reconciler (a small coordinator) and its parts (the upcoming index,
claims and refills, the held objects, the lease keeper, firing, result
decisions, requests, writes, log lines; the limiter of calls with limits per
key, with the places it holds and the lines of calls that wait),
the invoker that makes calls, the outbound policy that says where calls may
go, and the loop's housekeeping chores.

May import: lambdaop.engine, lambdaop.store, lambdaop.spec, lambdaop.core.
"""
