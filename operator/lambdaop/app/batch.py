"""The one batch validator: what is wrong with a set of spec documents, before anything is applied.

A batch (one body of `POST /specs`, the files of `lambdaop validate`, the
files of the folder applied together) is refused document by document, each
problem naming its file, line and field: a document that does not validate,
a name defined twice (in the batch, or by a batch document and a file outside
the batch), a target the outbound policy refuses. `validate` (offline),
`apply -f` (through the API), the API and the folder all ask this one
`Checker`; the folder says what its other files hold and that its files are
applied whole. Called by the API, the folder, the applier and the CLI.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lambdaop.core.errors import Problem, SpecInvalid
from lambdaop.loop.outbound import SECURE, Policy, Refused
from lambdaop.spec import AnySpec, Document, targets, templated

Name = tuple[str, str]  # kind, metadata.name


@dataclass(frozen=True)
class Place:
    """Where a document is: its file (if any), index and line (index 0 for a name a file holds)."""

    file: str | None
    document: int
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.file else f"document {self.document + 1} (line {self.line})"


@dataclass
class DefinedTwice(Problem):
    """One place of a name defined more than once (none of its documents is applied).

    `kind` and `name` say which name, for the folder; it is answered like any problem (its
    message names them)."""

    kind: str = ""
    name: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().as_dict().items() if k not in ("kind", "name")}


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

    def check(
        self,
        files: Iterable[tuple[str | None, list[Document]]],
        held: Mapping[str, Mapping[Name, int]] | None = None,
        whole: bool = False,
    ) -> list[Problem]:
        """Every problem of a batch of files (a request body is one file with no name).

        `held` is what files already define, file by file (name -> line): a file of the batch
        defines its names anew; what any other file holds stands, and a batch document naming
        it is defined twice, reported at every place of the name, the other file's too.
        With `whole` (the specs folder), a file is applied whole or not at all: a file with a
        document that does not validate is reported for its documents' own problems only (its
        valid documents' names and targets are not judged), and what it held stands.
        """
        problems: list[Problem] = []
        seen: dict[Name, list[Place]] = {}
        renewed: set[str] = set()
        for file, docs in files:
            if whole and any(d.spec is None for d in docs):
                problems += [_located(p, file) for d in docs for p in d.problems]
                continue
            if file is not None:
                renewed.add(file)
            for d in docs:
                problems += [_located(p, file) for p in d.problems]
                if d.spec is None:
                    continue
                problems += self.targets(d.spec, d.line, None if file else d.index, file)
                seen.setdefault((d.spec.kind, d.spec.metadata.name), []).append(Place(file, d.index, d.line))
        for file, names in (held or {}).items():
            if file in renewed:
                continue
            for name, line in names.items():
                if name in seen:  # what only other files hold is not this batch's to judge
                    seen[name].append(Place(file, 0, line))
        problems += duplicates(seen)
        return sorted(problems, key=lambda p: (p.file or "", p.document or 0, p.line or 0))


def duplicates(seen: Mapping[Name, list[Place]]) -> list[DefinedTwice]:
    """A problem at each place of a name defined more than once."""
    out = []
    for (kind, name), places in seen.items():
        if len(places) < 2:
            continue
        where = ", ".join(str(p) for p in places)
        for place in places:
            out.append(
                DefinedTwice(
                    f"{kind} {name!r} is defined more than once ({where}); none of them is applied",
                    field="metadata.name",
                    file=place.file,
                    line=place.line,
                    document=None if place.file else place.document,
                    kind=kind,
                    name=name,
                )
            )
    return out


def _located(problem: Problem, file: str | None) -> Problem:
    if file is not None and problem.file is None:
        problem.file = file
    return problem
