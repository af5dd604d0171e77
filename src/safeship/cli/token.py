"""``safeship token mint --env E --sub S``: a token signed with the environment's secret, for
manual tests (``websocat``, browser consoles, ``safeship probe --token-file``)."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    token_app = typer.Typer(
        name="token",
        help="Mint tokens for manual tests.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    @token_app.command("mint")
    def mint_cmd(
        env: str = typer.Option(
            ..., "--env", metavar="ENV", help="Environment whose secret signs."
        ),
        sub: str = typer.Option(
            ..., "--sub", metavar="SUBJECT", help="The token's subject (user id)."
        ),
        ttl: float = typer.Option(
            300.0, "--ttl", metavar="SECONDS", min=1, help="Lifetime in seconds."
        ),
        out: str | None = typer.Option(
            None,
            "--out",
            metavar="FILE",
            help="Write the token to FILE (mode 0600) instead of stdout.",
        ),
        json_output: bool = typer.Option(False, "--json", help="Print a JSON object."),
    ) -> None:
        """Sign a short-lived token with the environment's JWT secret (resolved like the
        service resolves it: JWT_SECRET_<ENV>, then JWT_SECRET, from the environment and the
        env_file). The token is a credential: it goes to stdout or --out, never to a log."""
        import os
        import time
        from pathlib import Path

        from ..config import load_manifest
        from ..errors import UsageError
        from ..secrets import default_sources, resolve_secret
        from ..tokens import mint
        from ._output import emit_json

        if not sub.strip():
            raise UsageError("--sub is empty", hint="pass the user id the token stands for")
        manifest = load_manifest()
        manifest.environment(env)
        config = manifest.secret_config(manifest.auth.secret)
        resolved = resolve_secret(
            manifest.auth.secret,
            env=env,
            critical=manifest.is_critical(env),
            sources=default_sources(manifest, env),
            salt=manifest.service.salt,
            min_bytes=config.min_bytes,
            per_environment=config.per_environment,
        )
        if resolved.generated:
            raise UsageError(
                f"no JWT secret for environment {env!r}: a token signed with a random one "
                "would be rejected by every service",
                hint=f"run `safeship secrets init --env {env}`, or set "
                f"{manifest.auth.secret}_{env.upper()}",
            )
        token = mint(
            resolved.value,
            sub=sub,
            ttl=ttl,
            issuer=manifest.auth.issuer,
            audience=manifest.auth.audience,
            algorithm=manifest.auth.algorithms[0],
        )
        expires = int(time.time() + ttl)
        if out:
            path = Path(out)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(token + "\n")
            os.chmod(path, 0o600)
        if json_output:
            data = {
                "ok": True,
                "env": env,
                "sub": sub,
                "expires": expires,
                "secret": resolved.name,
                "fingerprint": resolved.fingerprint,
            }
            if not out:
                data["token"] = token
            else:
                data["file"] = str(path)
            emit_json(data)
        elif not out:
            print(token)
        else:
            print(f"token for {sub!r} written to {path} (expires in {int(ttl)} s)")

    app.add_typer(token_app)
