"""runtime: wires one lambdaop process together and starts and stops it.

Owns the effective configuration (`config`) and the `Runtime`, which starts
the store (the embedded server or MongoDB), the writer, the reconcile loop,
the service, the HTTP server (waitress) and the folder watcher.

May import: every package below it (api, app, loop, engine, store, spec, core).
"""
