"""Who is calling: bearer tokens on every route but the public ones, sign-in, and users and tokens.

Called by the app factory (middleware and routes).
"""

from __future__ import annotations

import datetime as dt

import falcon

from lambdaop.api.bodies import bearer, read_fields
from lambdaop.api.fields import Fields
from lambdaop.app.users import User, Users
from lambdaop.core.clock import iso
from lambdaop.core.errors import Conflict, Forbidden, Problem, SpecInvalid
from lambdaop.spec import parse_duration

PUBLIC = {"/healthz", "/readyz", "/openapi.json", "/docs", "/auth/login"}


def user_of(req: falcon.Request) -> User:
    user: User = req.context.user
    return user


class AuthMiddleware:
    def __init__(self, users: Users, public: frozenset[str] = frozenset()) -> None:
        self.users = users
        self.public = PUBLIC | public

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if (
            req.path in self.public
            or req.method == "OPTIONS"
            or req.path == "/"
            or req.path.startswith("/ui/")
            or req.path.startswith("/callbacks/")  # the signed token in the path is the proof
        ):
            return
        req.context.user = self.users.authenticate(bearer(req))


class Login:
    """`POST /auth/login` (`name` or `username`, and `password`): a web session token."""

    def __init__(self, users: Users) -> None:
        self.users = users

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        f = Fields(read_fields(req))
        _, name = f.take(("name", "username"))
        _, password = f.take(("password",))
        if not isinstance(name, str) or not isinstance(password, str):
            f.problem("name", "name (or username) and password are required")
        f.finish()
        assert isinstance(name, str) and isinstance(password, str)
        token = self.users.login(name.strip(), password, req.remote_addr or "")
        resp.media = {"token": token, "name": name.strip(), "expiresInHours": self.users.session_hours}


class Logout:
    def __init__(self, users: Users) -> None:
        self.users = users

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.users.logout(bearer(req))
        resp.media = {"signedOut": True}


def _admin(req: falcon.Request) -> User:
    user = user_of(req)
    if not user.admin:
        raise Forbidden("only an admin manages users")
    return user


def _admin_or_self(req: falcon.Request, name: str) -> None:
    user = user_of(req)
    if not user.admin and user.name != name:
        raise Forbidden("only an admin manages other users' tokens")


class UsersRoute:
    """`/users` (admin): list, create; `/users/{name}`: remove; `/users/{name}/tokens[/{prefix}]`: tokens."""

    def __init__(self, users: Users) -> None:
        self.users = users

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _admin(req)
        resp.media = {"users": [{**u, "created": iso(u.get("created"))} for u in self.users.listing()]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        _admin(req)
        f = Fields(read_fields(req))
        _, name = f.take(("name", "username"))
        _, admin = f.take(("admin",))
        f.finish()
        if not isinstance(name, str):
            raise SpecInvalid("invalid request", [Problem("the user's name is required", field="name")])
        token = self.users.add(name, admin=admin in (True, "true", "on", "1"))
        resp.status = falcon.HTTP_201
        resp.media = {"name": name, "token": token}

    def on_delete_one(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        admin = _admin(req)
        if name == admin.name:
            raise Conflict("an admin cannot remove itself; ask another admin")
        self.users.remove(name)
        resp.media = {"removed": name}

    def on_get_tokens(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        _admin_or_self(req, name)
        resp.media = {"tokens": [{k: iso(v) if isinstance(v, dt.datetime) else v for k, v in t.items()} for t in self.users.tokens(name)]}  # fmt: skip

    def on_post_tokens(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        _admin_or_self(req, name)
        f = Fields(read_fields(req))
        expires = f.millis(("expiresIn",))
        f.finish()
        try:
            lifetime = parse_duration(expires) if expires else None
        except ValueError as exc:
            raise SpecInvalid("invalid request", [Problem(str(exc), field="expiresIn")]) from None
        token = self.users.issue_token(name, lifetime)
        resp.status = falcon.HTTP_201
        resp.media = {"name": name, "token": token}

    def on_delete_token(self, req: falcon.Request, resp: falcon.Response, name: str, prefix: str) -> None:
        _admin_or_self(req, name)
        resp.media = {"revoked": self.users.revoke(name, prefix)}


class Me:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = user_of(req)
        resp.media = {"name": user.name, "admin": user.admin}
