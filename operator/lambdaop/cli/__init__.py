"""cli: the `lambdaop` command: serve, validate, diff, and the client verbs.

The only code that reads the environment and the command line; it builds a
`Config` and a `Runtime`, or talks to a running server through `client`.

May import: every lambdaop package.
"""
