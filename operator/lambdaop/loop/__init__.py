"""loop: the reconcile loop that drives every object to a final state.

Owns the reconciler (a small coordinator) and its parts (the upcoming index,
the held objects, the lease keeper, result decisions, requests, log lines),
the invoker that makes calls, the outbound policy that says where calls may
go, and the loop's housekeeping chores.

May import: lambdaop.engine, lambdaop.store, lambdaop.spec, lambdaop.core.
"""
