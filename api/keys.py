"""API keys: random, shown once, stored as HMAC-SHA256 with the pepper. CLI: ``python -m api.keys``.

A key reads ``pos_<key id>_<secret>``. The key id (public) finds the row; the HMAC of the whole key
is compared in constant time. The plaintext is never stored or logged.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Engine, insert, select, update

from api.db import api_keys, init_db, make_engine, tenants
from feature_repo.contract import Scope

KEY_PREFIX: Final = "pos"
# Every scope, in declaration order; a key's row stores their values, space-separated.
ALL_SCOPES: Final[tuple[Scope, ...]] = tuple(Scope)


@dataclass(frozen=True)
class CreatedKey:
    """A new key: ``plaintext`` is shown once and never stored."""

    key_id: str
    tenant: str
    plaintext: str
    scopes: tuple[str, ...]
    rate_limit: str


def hash_key(plaintext: str, pepper: bytes) -> str:
    """HMAC-SHA256 of the whole key with the server-side pepper, hex."""
    return hmac.new(pepper, plaintext.encode(), hashlib.sha256).hexdigest()


def split_key(plaintext: str) -> str | None:
    """The key id of a well-formed key, else ``None``."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1].isalnum() or len(parts[2]) < 20:
        return None
    return parts[1]


def create_key(engine: Engine, tenant: str, scopes: tuple[str, ...], rate_limit: str, pepper: bytes) -> CreatedKey:
    """Create ``tenant`` if new and a key for it."""
    unknown = set(scopes) - set(ALL_SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {sorted(unknown)}; known: {[s.value for s in ALL_SCOPES]}")
    key_id = secrets.token_hex(6)
    plaintext = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    now = datetime.now(UTC)
    with engine.begin() as conn:
        tenant_id = conn.execute(select(tenants.c.id).where(tenants.c.name == tenant)).scalar()
        if tenant_id is None:
            inserted = conn.execute(insert(tenants).values(name=tenant, created_at=now)).inserted_primary_key
            tenant_id = inserted[0] if inserted else None
        conn.execute(
            insert(api_keys).values(
                key_id=key_id,
                tenant_id=tenant_id,
                prefix=f"{KEY_PREFIX}_{key_id}",
                key_hash=hash_key(plaintext, pepper),
                scopes=" ".join(scopes),
                rate_limit=rate_limit,
                created_at=now,
            )
        )
    return CreatedKey(key_id, tenant, plaintext, tuple(scopes), rate_limit)


def revoke_key(engine: Engine, key_id: str) -> bool:
    """Mark a key revoked; False when no active key has that id."""
    with engine.begin() as conn:
        result = conn.execute(
            update(api_keys)
            .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    return result.rowcount == 1


def list_keys(engine: Engine) -> list[dict[str, str | None]]:
    """Every key without its hash: id, prefix, tenant, scopes, limit, created, revoked."""
    query = select(
        api_keys.c.key_id,
        api_keys.c.prefix,
        tenants.c.name.label("tenant"),
        api_keys.c.scopes,
        api_keys.c.rate_limit,
        api_keys.c.created_at,
        api_keys.c.revoked_at,
    ).join(tenants, tenants.c.id == api_keys.c.tenant_id)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(api_keys.c.created_at)).mappings().all()
    return [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()} for row in rows]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m api.keys", description="Manage gateway API keys.")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--tenant", default=None, help="tenant name (created if new)")
    create.add_argument("--scopes", default=",".join(ALL_SCOPES), help="comma-separated scopes (default: all)")
    create.add_argument("--rate-limit", default=None, help="e.g. 600/minute (default: the settings' default)")
    create.add_argument("--demo", action="store_true", help="a local demo key: tenant 'demo', all scopes")
    sub.add_parser("list", help="list keys (never their secrets)")
    revoke = sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m api.keys``."""
    from api.settings import get_settings

    args = _parser().parse_args(argv)
    settings = get_settings()
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    if args.command == "create":
        tenant = "demo" if args.demo else args.tenant
        if not tenant:
            print("--tenant is required (or --demo)", file=sys.stderr)
            return 2
        scopes = tuple(s.strip() for s in args.scopes.split(",") if s.strip())
        created = create_key(engine, tenant, scopes, args.rate_limit or settings.default_rate_limit, settings.pepper)
        print(json.dumps({"key_id": created.key_id, "tenant": tenant, "api_key": created.plaintext}))
        print("store this key now: it is shown only once", file=sys.stderr)
    elif args.command == "list":
        print(json.dumps(list_keys(engine), indent=2))
    elif not revoke_key(engine, args.key_id):
        print(f"no active key {args.key_id}", file=sys.stderr)
        return 1
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
