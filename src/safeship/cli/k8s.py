"""``safeship k8s render``: a Deployment, Service and PodDisruptionBudget that pass the
deploy-config gate."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    k8s_app = typer.Typer(
        name="k8s",
        help="Kubernetes helpers.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    @k8s_app.command("render")
    def render_cmd(
        image: str | None = typer.Option(
            None,
            "--image",
            metavar="IMAGE",
            help="The container image; default: [deploy.kubernetes] image.",
        ),
        env: str | None = typer.Option(
            None, "--env", metavar="ENV", help="Set SAFESHIP_ENV in the container."
        ),
        json_output: bool = typer.Option(
            False, "--json", help="Print the documents and the gate's findings as JSON."
        ),
    ) -> None:
        """Print manifests for kubectl apply: startup, readiness and liveness probes on the
        health routes, a preStop sleep so the pod leaves the endpoints before SIGTERM, a grace
        period covering it and the drain window, maxUnavailable 0, secrets by envFrom from
        [deploy.kubernetes] secret. Exit 1 when they fail the deploy-config gate."""
        import sys

        import yaml

        from ..config import load_manifest
        from ..deploy.targets.k8s_manifests import Workload, standalone
        from ..errors import UsageError
        from ..gates.deploy_config_k8s import check_kubernetes
        from ._output import emit_json

        manifest = load_manifest()
        if env is not None:
            manifest.environment(env)  # an unknown environment is a config error
        settings = manifest.deploy.kubernetes
        chosen = image or settings.image
        if not chosen:
            raise UsageError(
                "no image to render",
                hint="pass --image IMAGE, or set [deploy.kubernetes] image in safeship.toml",
            )
        workload = Workload(
            service=manifest.service.name,
            namespace=settings.namespace,
            image=chosen,
            port=settings.port,
            replicas=settings.replicas,
            secret=settings.secret,
            drain_seconds=manifest.deploy.drain_seconds,
            grace_seconds=manifest.deploy.stop_grace_seconds,
            pre_stop_seconds=settings.pre_stop_seconds,
            health_prefix=manifest.service.health_prefix,
            env={"SAFESHIP_ENV": env} if env else {},
        )
        documents = standalone(workload)
        text = yaml.safe_dump_all(documents, sort_keys=False)
        findings = check_kubernetes(documents, manifest, path="<rendered>")
        blocking = [f for f in findings if f.blocking]
        if json_output:
            emit_json(
                {
                    "ok": not blocking,
                    "documents": documents,
                    "yaml": text,
                    "findings": [f.as_dict() for f in findings],
                }
            )
        else:
            sys.stdout.write(text)
            for finding in findings:
                level = "error" if finding.blocking else "warning"
                print(f"# {level}: {finding.message} (fix: {finding.hint})", file=sys.stderr)
        if blocking:
            raise typer.Exit(1)

    app.add_typer(k8s_app)
