"""``safeship cloudrun render``: a Cloud Run service YAML that passes the deploy-config gate."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    cloudrun_app = typer.Typer(
        name="cloudrun",
        help="Cloud Run helpers.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    @cloudrun_app.command("render")
    def render_cmd(
        image: str | None = typer.Option(
            None,
            "--image",
            metavar="IMAGE",
            help="The container image; default: [deploy.cloudrun] image.",
        ),
        env: str | None = typer.Option(
            None, "--env", metavar="ENV", help="Set SAFESHIP_ENV in the container."
        ),
        json_output: bool = typer.Option(
            False, "--json", help="Print the document and the gate's findings as JSON."
        ),
    ) -> None:
        """Print a service YAML for `gcloud run services replace`: HTTP startup and liveness
        probes on the health routes, a request timeout that covers the longest session,
        HTTP/1.1 to the container, session affinity when needed, secrets as Secret Manager
        references. Exit 1 when the manifest itself fails the deploy-config gate (e.g. a drain
        window over Cloud Run's 10 s)."""
        import sys

        from ..config import load_manifest
        from ..deploy.cloudrun_service import service_document, to_yaml
        from ..errors import UsageError
        from ..gates.deploy_config import check_cloudrun
        from ._output import emit_json

        manifest = load_manifest()
        if env is not None:
            manifest.environment(env)
        chosen = image or manifest.deploy.cloudrun.image
        if not chosen:
            raise UsageError(
                "no image to render",
                hint="pass --image IMAGE, or set [deploy.cloudrun] image in safeship.toml",
            )
        document = service_document(manifest, image=chosen, env=env)
        findings = check_cloudrun(document, manifest, path="<rendered>")
        blocking = [f for f in findings if f.blocking]
        if json_output:
            emit_json(
                {
                    "ok": not blocking,
                    "document": document,
                    "yaml": to_yaml(document),
                    "findings": [f.as_dict() for f in findings],
                }
            )
        else:
            sys.stdout.write(to_yaml(document))
            for finding in findings:
                level = "error" if finding.blocking else "warning"
                print(f"# {level}: {finding.message} (fix: {finding.hint})", file=sys.stderr)
        if blocking:
            raise typer.Exit(1)

    app.add_typer(cloudrun_app)
