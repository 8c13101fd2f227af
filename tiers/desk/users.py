"""The desk's people and sessions (DESIGN §8 `zhibao user add|list|remove`).

Node-local, never log entries: two tables in the node's database, made on first use.
Passwords are kept as Argon2id hashes (cryptography), salt per person, the parameters
stored with the hash; a session is known by the SHA-256 of its cookie, never the cookie.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from functools import cache
from typing import Any

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from sync.logstore import LogStore
from sync.protocol import i18n
from sync.protocol.errors import ZhibaoError
from sync.store import StateTables, make_tables

ROLES = ("admin", "viewer")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
NAME = re.compile(r"^[\w.-]{1,32}$")
# OWASP's floor for Argon2id: 19 MiB, 2 passes, 1 lane.
MEMORY_KIB, ITERATIONS, LANES, LENGTH = 19456, 2, 1, 32
IDLE_SETTING = "desk_idle_minutes"
IDLE_DEFAULT = 30
SEEN_GRAIN = 60.0  # seconds: a session's last use is written when it moved by more

_DDL = """
CREATE TABLE IF NOT EXISTS desk_users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS desk_sessions (
    token TEXT PRIMARY KEY, name TEXT NOT NULL, csrf TEXT NOT NULL,
    last_seen REAL NOT NULL);
"""

i18n.register(
    {
        "desk.user.bad_name": (
            "'{name}' is not a user name: 1-32 letters, digits, '.', '_' or '-'",
            "“{name}”不是有效的用户名：1-32 个字母、数字、“.”、“_”或“-”",
        ),
        "desk.user.bad_role": (
            "'{role}' is not a role: use admin or viewer",
            "“{role}”不是有效的角色：请用 admin 或 viewer",
        ),
        "desk.role.admin": ("admin", "管理员"),
        "desk.role.viewer": ("viewer", "查看者"),
        "desk.user.exists": ("user '{name}' already exists", "用户“{name}”已存在"),
        "desk.user.unknown": ("no user named '{name}'", "没有名为“{name}”的用户"),
        "desk.user.short": (
            "the password is too short: at least {min} characters",
            "密码太短：至少 {min} 个字符",
        ),
        "desk.user.long": (
            "the password is too long: at most {max} characters",
            "密码太长：最多 {max} 个字符",
        ),
        "desk.user.mismatch": ("the two passwords differ", "两次输入的密码不一致"),
        "desk.user.no_password": (
            "no password: give it on the first line of standard input",
            "没有密码：请在标准输入的第一行给出",
        ),
    }
)


class DeskError(ZhibaoError):
    default_key = "desk.user.unknown"


@dataclass(frozen=True)
class User:
    name: str
    role: str
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "created_at": self.created_at}


class DeskUsers(StateTables):
    """The desk's people and sessions, at their version (sync._tables)."""

    name = "desk_users"
    version = 1
    ddl = _DDL


def ensure(store: LogStore) -> None:
    """Make the desk's tables if this database has none yet (or bring them to this code's
    version; nothing runs when they are at it)."""
    make_tables(store, [DeskUsers()])


def anyone(store: LogStore) -> bool:
    """Whether this node has a desk user at all (before `ensure`, none)."""
    made = store.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'desk_users'")
    return bool(made) and bool(store.query("SELECT 1 FROM desk_users LIMIT 1"))


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise DeskError("desk.user.bad_name", name=name)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise DeskError("desk.user.short", min=MIN_PASSWORD)
    if len(password) > MAX_PASSWORD:
        raise DeskError("desk.user.long", max=MAX_PASSWORD)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _kdf(salt: bytes, memory: int, iterations: int, lanes: int, length: int) -> Argon2id:
    return Argon2id(salt=salt, length=length, iterations=iterations, lanes=lanes,
                    memory_cost=memory)  # fmt: skip


def hash_password(password: str) -> str:
    """`argon2id$m=…,t=…,p=…$salt$hash` (unpadded base64), a fresh salt each time."""
    salt = secrets.token_bytes(16)
    digest = _kdf(salt, MEMORY_KIB, ITERATIONS, LANES, LENGTH).derive(password.encode())
    return f"argon2id$m={MEMORY_KIB},t={ITERATIONS},p={LANES}${_b64(salt)}${_b64(digest)}"


def password_matches(password: str, stored: str) -> bool:
    """Whether `password` gives `stored` (constant-time: cryptography's verify)."""
    try:
        scheme, params, salt, digest = stored.split("$")
        numbers = dict(part.split("=") for part in params.split(","))
        expected = _unb64(digest)
        kdf = _kdf(_unb64(salt), int(numbers["m"]), int(numbers["t"]), int(numbers["p"]),
                   len(expected))  # fmt: skip
    except (ValueError, KeyError):
        return False
    if scheme != "argon2id":
        return False
    try:
        kdf.verify(password.encode(), expected)
    except InvalidKey:
        return False
    return True


@cache
def _decoy() -> str:
    """Checked against when the name is unknown, so a wrong name costs what a wrong password
    does. Made at the first check (not at import: every `zhibao user` and `serve` start
    paid its Argon2id), whatever the name, so the first check takes as long either way."""
    return hash_password(secrets.token_hex(16))


def add_user(store: LogStore, name: str, role: str, password: str, created_at: str) -> User:
    check_name(name)
    if role not in ROLES:
        raise DeskError("desk.user.bad_role", role=role)
    check_password(password)
    ensure(store)
    with store.transaction():
        if store.query("SELECT 1 FROM desk_users WHERE name = ?", (name,)):
            raise DeskError("desk.user.exists", name=name)
        store.execute("INSERT INTO desk_users VALUES (?, ?, ?, ?)",
                      (name, role, hash_password(password), created_at))  # fmt: skip
    return User(name, role, created_at)


def list_users(store: LogStore) -> list[User]:
    ensure(store)
    rows = store.query("SELECT name, role, created_at FROM desk_users")
    return [User(*row) for row in sorted(rows)]  # by code point, whatever the collation


def remove_user(store: LogStore, name: str) -> None:
    """Remove `name` and end every session of theirs."""
    ensure(store)
    with store.transaction():
        if not store.query("SELECT 1 FROM desk_users WHERE name = ?", (name,)):
            raise DeskError("desk.user.unknown", name=name)
        store.execute("DELETE FROM desk_sessions WHERE name = ?", (name,))
        store.execute("DELETE FROM desk_users WHERE name = ?", (name,))


def authenticate(store: LogStore, name: str, password: str) -> User | None:
    """The user when `password` is theirs; None otherwise (an unknown name takes as long)."""
    return verify(find(store, name), password)


def find(store: LogStore, name: str) -> tuple[User, str] | None:
    """`name`'s user and stored hash, None when there is no such user (a quick query: the
    desk holds its database lock for this, not for `verify`)."""
    ensure(store)
    rows = store.query("SELECT role, hash, created_at FROM desk_users WHERE name = ?", (name,))
    if not rows:
        return None
    role, stored, created_at = rows[0]
    return User(name, role, created_at), stored


def verify(found: tuple[User, str] | None, password: str) -> User | None:
    """The user `find` gave when `password` is theirs (Argon2id: slow, on purpose, and
    needing no database); None otherwise, after as long a check for an unknown name."""
    decoy = _decoy()
    if found is None:
        password_matches(password, decoy)
        return None
    return found[0] if password_matches(password, found[1]) else None


# --- sessions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    name: str
    role: str
    csrf: str


def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(store: LogStore, name: str, now: float, idle_seconds: float) -> str:
    """A new session for `name`; returns the cookie's value (kept only as its hash).
    Sessions idle longer than `idle_seconds` go at the same time (the table stays small)."""
    ensure(store)
    token = secrets.token_urlsafe(32)
    with store.transaction():
        store.execute("DELETE FROM desk_sessions WHERE last_seen < ?", (now - idle_seconds,))
        store.execute("INSERT INTO desk_sessions VALUES (?, ?, ?, ?)",
                      (_token_key(token), name, secrets.token_urlsafe(24), now))  # fmt: skip
    return token


def session(store: LogStore, token: str, now: float, idle_seconds: float) -> Session | None:
    """The live session for the cookie `token`, its idle time restarted; None (and the
    session ended) once idle longer than `idle_seconds` or its user was removed.

    The last use is written only when it moved by more than `SEEN_GRAIN` seconds (a page
    costs no write transaction most of the time), so the idle time counts from a last use
    at most that much older than the real one: a session may end up to `SEEN_GRAIN` seconds
    before `idle_seconds` after its last use, never after."""
    key = _token_key(token)
    rows = store.query(
        "SELECT s.name, u.role, s.csrf, s.last_seen FROM desk_sessions s "
        "JOIN desk_users u ON u.name = s.name WHERE s.token = ?",
        (key,),
    )
    if not rows:  # a guessed or ended cookie: nothing to write (no write lock for a stranger)
        return None
    if now - rows[0][3] > idle_seconds:
        with store.transaction():
            store.execute("DELETE FROM desk_sessions WHERE token = ?", (key,))
        return None
    name, role, csrf, seen = rows[0]
    if now - seen > SEEN_GRAIN:
        with store.transaction():
            store.execute("UPDATE desk_sessions SET last_seen = ? WHERE token = ?", (now, key))
    return Session(name, role, csrf)


def close_session(store: LogStore, token: str) -> None:
    ensure(store)
    with store.transaction():
        store.execute("DELETE FROM desk_sessions WHERE token = ?", (_token_key(token),))


def idle_seconds(settings: dict[str, Any]) -> float:
    """node.toml `desk_idle_minutes` (default 30) in seconds; a bad value is the default."""
    value = settings.get(IDLE_SETTING, IDLE_DEFAULT)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        value = IDLE_DEFAULT
    return float(value) * 60
