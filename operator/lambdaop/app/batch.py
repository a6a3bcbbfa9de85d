"""The one batch validator: what is wrong with a set of spec documents, before anything is applied.

A batch (one body of `POST /specs`, the files of `lambdaop validate`, the
files of the folder applied together) is refused document by document, each
problem naming its file, line and field: a document that does not validate,
a name defined twice in the batch, a target the outbound policy refuses.
`validate` (offline), `apply -f` (through the API), the API and the folder
all ask this one `Checker`. Called by the API, the folder, the applier and
the CLI.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from lambdaop.core.errors import Problem, SpecInvalid
from lambdaop.loop.outbound import SECURE, Policy, Refused
from lambdaop.spec import AnySpec, Document, targets, templated


@dataclass(frozen=True)
class Place:
    """Where a document of a batch is: its file (if any), index and line."""

    file: str | None
    document: int
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.file else f"document {self.document + 1} (line {self.line})"


class Checker:
    def __init__(self, policy: Policy = SECURE) -> None:
        self.policy = policy

    def targets(
        self, obj: AnySpec, line: int | None = None, document: int | None = None, file: str | None = None
    ) -> list[Problem]:
        """The calls of a spec the outbound policy refuses, each naming its field.

        A URL whose host an expression gives (`${{ … }}`) is judged once filled in, when the call
        is made. A Lambda call (`lambda`) has no URL here: its endpoint comes from the environment
        (AWS's public one, or an emulator's from AWS_ENDPOINT_URL*), and is judged when
        the call is made, before any credential is read.
        """
        problems = []
        for field_path, invoke in targets(obj):
            if invoke.url is None or templated(urlsplit(invoke.url).netloc) or invoke.url.startswith("${{"):
                continue  # an expression gives the host: judged when the call is made, as every call is
            try:
                self.policy.check_url(invoke.url)
            except Refused as exc:
                problems.append(Problem(str(exc), field=field_path, file=file, line=line, document=document))
        return problems

    def raise_for_targets(self, obj: AnySpec) -> None:
        problems = self.targets(obj)
        if problems:
            raise SpecInvalid("invalid spec", problems)

    def check(self, files: Iterable[tuple[str | None, list[Document]]]) -> list[Problem]:
        """Every problem of a batch of files (a request body is one file with no name)."""
        problems: list[Problem] = []
        seen: dict[tuple[str, str], list[Place]] = {}
        for file, docs in files:
            for d in docs:
                problems += [_located(p, file) for p in d.problems]
                if d.spec is None:
                    continue
                problems += self.targets(d.spec, d.line, None if file else d.index, file)
                seen.setdefault((d.spec.kind, d.spec.metadata.name), []).append(Place(file, d.index, d.line))
        problems += duplicates(seen)
        return sorted(problems, key=lambda p: (p.file or "", p.document or 0, p.line or 0))


def duplicates(seen: dict[tuple[str, str], list[Place]]) -> list[Problem]:
    """A problem at each place of a name defined more than once."""
    out = []
    for (kind, name), places in seen.items():
        if len(places) < 2:
            continue
        where = ", ".join(str(p) for p in places)
        for place in places:
            out.append(
                Problem(
                    f"{kind} {name!r} is defined more than once ({where}); none of them is applied",
                    field="metadata.name",
                    file=place.file,
                    line=place.line,
                    document=None if place.file else place.document,
                )
            )
    return out


def _located(problem: Problem, file: str | None) -> Problem:
    if file is not None and problem.file is None:
        problem.file = file
    return problem
