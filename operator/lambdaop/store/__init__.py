"""store: where objects, leases, history, counters and users are kept.

Owns the store contract (`contract`: the Protocols every implementation
honours, and the `Op` of one state transition), the MongoDB implementation
(`mongo`), the in-memory implementation (`memory`), the embedded server's
keeper (`embedded`) and the group-commit writer (`writer`). The only package
that imports pymongo, and the only one that builds MongoDB updates.

May import: lambdaop.spec and lambdaop.core. Never the engine.
"""
