"""engine: what happens to an object, as pure functions of (state, event, now).

Owns the state machine of a run of a Task or TaskSet (`machine`), where an
object is (`progress`), the steps of a run and what each calls (`steps`),
what comes between runs (`recurring`), a person's cancel, reschedule, suspend
and resume (`changes`), runs asked for (`ondemand`), the outcome of a call as
the machine sees it (`outcomes`), retry waits (`retrypolicy`), recurring
schedules (`recurrence`), the typed record of a stored object with the
changes made to it (`record`), what named steps answered (`outputs`) and
filling in their `${{ EXPR }}` (`templates`); parallel steps: where each
branch stands (`lanes`) and their calls (`waves`); and waits for a callback:
their signed single-use tokens and what a POST does (`callbacks`). No I/O,
no clock, no threads.

May import: lambdaop.spec and lambdaop.core. Never the store (the two do not
know each other), never a driver, a web framework or a file watcher.
"""
