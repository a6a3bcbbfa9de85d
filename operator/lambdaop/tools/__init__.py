"""tools: programs beside lambdaop, for walkthroughs, tests and benchmarks.

`demo` is a Lambda-like HTTP endpoint (`python -m lambdaop.tools.demo`). It
imports no other lambdaop package, and no lambdaop package imports it.
"""
