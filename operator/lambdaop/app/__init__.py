"""app: what lambdaop does for its users, whichever way they come.

Owns the service (apply, cancel, modify, suspend, resume, read), the one
batch validator used by the API, the CLI and the folder, the GitOps folder
watcher and its status files, the presentation of a stored object, and users
with their tokens and sessions, and the POSTs to waitForCallback steps' callback
URLs (`callbacks`), and what a waiting call waits for, told from the store (`waiting`).

May import: lambdaop.loop, lambdaop.engine, lambdaop.store, lambdaop.spec,
lambdaop.core.
"""
