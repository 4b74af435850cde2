"""Job specs and the Ray Jobs API: `batchsep run`, `submit`, `status`, `logs`, `cancel`."""

from __future__ import annotations

import sys
from typing import Any

import click

from batchsep.cli.common import (
    EPILOG,
    EPILOG_JOBS,
    EPILOG_SUBMIT,
    EXIT_OK,
    EXIT_SOME_FAILED,
    _fail_fatal,
    _fail_usage,
    api_call,
)
from batchsep.cli.options import JOBS_ADDRESS, SET_OPTION
from batchsep.errors import BatchsepError


@click.command(epilog=EPILOG)
@click.argument("spec_uri")
@click.option(
    "--address",
    default=None,
    help="Ray address for every stage (overrides the spec's ray.address). Default: $RAY_ADDRESS "
    "(set inside a Ray Job), else each stage runs here when small or on an embedded local Ray "
    "(see `batchsep scan --help`, --local/--ray).",
)
@SET_OPTION
@click.option("--dry-run", is_flag=True, help="Validate the spec and print the plan; run nothing.")
def run(spec_uri: str, address: str | None, overrides: tuple[str, ...], dry_run: bool) -> None:
    """Run the job spec SPEC_URI (YAML): every stage in order, with a summary per stage.

    A stage is a batchsep command (scan, enhance, ...) with its options as params; a value
    "${STAGE.PARAM}" takes a parameter of an earlier stage. See jobs/README.md. The same spec
    runs on a cluster with `batchsep submit`.
    """
    from batchsep.jobs import spec as jobspec

    try:
        spec = jobspec.load_spec(spec_uri, overrides=overrides)
    except BatchsepError as e:  # invalid (ConfigError) or unreadable (StorageError) spec
        _fail_usage(str(e))
    click.echo(f"job {spec.name}: {len(spec.stages)} stage(s)")
    for s in spec.stages:
        params = ", ".join(f"{k}={jobspec.describe(v)}" for k, v in s.params.items())
        click.echo(f"  {s.index}. {s.name} ({s.stage}): {params}")
    if spec.env:
        click.echo(f"  env: {', '.join(sorted(spec.env))}")
    from batchsep.jobs.stages import missing_inputs

    missing, unchecked = missing_inputs(spec)
    for line in unchecked:
        click.echo(f"  warning: input not checked from here: {line}")
    if missing:
        _fail_usage("missing input(s):\n  " + "\n  ".join(missing))
    if dry_run:
        sys.exit(EXIT_OK)
    from batchsep.cli.console import Progress
    from batchsep.jobs import run as jobs

    bar = Progress()  # a bar on a terminal, plain lines in a Ray job's log

    def started(s: Any) -> None:
        click.echo(f"stage {s.index + 1}/{len(spec.stages)} {s.name} ({s.stage}) ...")

    def progress(s: Any) -> dict[str, Any]:
        return {"on_start": bar.start, "on_progress": bar.update}

    def done(o: Any) -> None:
        bar.close()
        click.echo(f"  done in {o.seconds:.1f} s: {jobs.summarize(o.result)}")
        for rel, err in list(getattr(o.result, "errors", None) or [])[:5]:
            click.echo(f"  failed: {rel}: {err}")

    try:
        outcomes = api_call(
            lambda: jobs.run_spec(
                spec, address=address, on_stage_start=started, on_stage_done=done, progress=progress
            )
        )
    except Exception as e:  # not a batchsep error: show it, and say the job stopped
        import traceback

        traceback.print_exc()
        _fail_fatal(f"job {spec.name} stopped: {type(e).__name__}: {e}")
    finally:
        bar.close()
    failed = sum(o.failed for o in outcomes)
    click.echo(f"job {spec.name}: {len(outcomes)} stage(s) done, {failed} item(s) failed")
    sys.exit(EXIT_SOME_FAILED if failed else EXIT_OK)


@click.command(epilog=EPILOG_SUBMIT)
@click.argument("spec_path", type=click.Path(exists=True, dir_okay=False))
@JOBS_ADDRESS
@click.option("--wait", is_flag=True, help="Stream the job's logs until it ends; exit as it did.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after SECONDS.")
@click.option(
    "--runtime-env", default=None, help="Base Ray runtime env: a JSON/YAML file or inline JSON."
)
@click.option(
    "--pip",
    "pip_reqs",
    multiple=True,
    help="pip requirement(s) that install batchsep on the cluster (a wheel URL, a private index's "
    "batchsep==VERSION, ...).",
)
@click.option(
    "--wheel",
    is_flag=True,
    help="Ship a wheel built from this checkout (the default when batchsep runs from a checkout).",
)
@click.option(
    "--no-install",
    is_flag=True,
    help="The cluster's Python already has batchsep (an image; the default when batchsep is installed "
    "from a wheel).",
)
@click.option(
    "--working-dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder to upload, holding the spec (default: a folder with only the spec).",
)
@SET_OPTION
@click.option("--submission-id", default=None, help="Job id to use (default: batchsep-NAME-XXXX).")
@click.option(
    "--dry-run", is_flag=True, help="Print the entrypoint and runtime env; submit nothing."
)
def submit(
    spec_path: str,
    address: str,
    wait: bool,
    timeout: float | None,
    runtime_env: str | None,
    pip_reqs: tuple[str, ...],
    wheel: bool,
    no_install: bool,
    working_dir: str | None,
    overrides: tuple[str, ...],
    submission_id: str | None,
    dry_run: bool,
) -> None:
    """Submit the job spec SPEC_PATH to a Ray cluster through the Jobs API; print the job id.

    The job runs `batchsep run SPEC` on the cluster. batchsep gets there as a wheel built from this
    checkout (default when batchsep runs from a source checkout; --wheel), from the cluster's image
    (default otherwise; --no-install) or from pip requirements you give (--pip). Credentials are never
    sent: object storage credentials (AWS_*) must be in the cluster's environment (see
    cluster/README.md).
    """
    import json

    from batchsep.jobs import run as jobs
    from batchsep.jobs import spec as jobspec
    from batchsep.jobs.stages import relative_paths

    if sum([wheel, no_install, bool(pip_reqs)]) > 1:
        _fail_usage("choose one of --pip, --wheel and --no-install")
    spec = api_call(lambda: jobspec.load_spec(spec_path, overrides=overrides))
    if relative := relative_paths(spec):
        click.echo(
            "warning: the job resolves relative paths in the head's working folder, not here; give "
            "absolute paths or s3:// URIs (--set STAGE.PARAM=VALUE):\n  " + "\n  ".join(relative),
            err=True,
        )
    install = "wheel" if wheel else "none" if no_install else "pip" if pip_reqs else None
    base = api_call(lambda: jobs.load_runtime_env(runtime_env))
    common: dict[str, Any] = dict(
        install=install, pip=list(pip_reqs) or None, working_dir=working_dir, runtime_env=base,
        submission_id=submission_id, overrides=overrides,
    )  # fmt: skip
    if dry_run:
        spec, sub = api_call(lambda: jobs.prepare_submission(spec_path, **common))
        click.echo(f"job {spec.name} ({len(spec.stages)} stage(s)) would be submitted to {address}")
        click.echo(f"  submission id: {sub.submission_id}\n  entrypoint: {sub.entrypoint}")
        click.echo(f"  runtime env: {json.dumps(sub.runtime_env, sort_keys=True)}")
        click.echo(f"  uploads: {', '.join(sub.files)}")
        if sub.staging_dir:
            import shutil

            shutil.rmtree(sub.staging_dir, ignore_errors=True)
        sys.exit(EXIT_OK)
    job_id = api_call(lambda: jobs.submit(spec_path, address=address, **common))
    click.echo(f"submitted job {job_id} to {address}")
    if not wait:
        click.echo(
            f"follow it with: batchsep logs {job_id} --address {address} --follow\n"
            f"status: batchsep status {job_id} --address {address}"
        )
        sys.exit(EXIT_OK)
    state = api_call(
        lambda: jobs.wait(
            job_id, address=address, timeout_s=timeout, write=lambda s: click.echo(s, nl=False)
        )
    )
    click.echo(jobs.describe_state(state))
    sys.exit(jobs.exit_code(state))


@click.command(epilog=EPILOG_JOBS)
@click.argument("job_id")
@JOBS_ADDRESS
def status(job_id: str, address: str) -> None:
    """Print the status of job JOB_ID (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
    from batchsep.jobs import run as jobs

    click.echo(jobs.describe_state(api_call(lambda: jobs.status(job_id, address=address))))


@click.command(epilog=EPILOG_JOBS)
@click.argument("job_id")
@JOBS_ADDRESS
@click.option("--follow", "-f", is_flag=True, help="Keep streaming until the job ends.")
def logs(job_id: str, address: str, follow: bool) -> None:
    """Print the logs (driver output) of job JOB_ID."""
    from batchsep.jobs import run as jobs

    if follow:
        api_call(
            lambda: jobs.follow_logs(
                job_id, address=address, write=lambda s: click.echo(s, nl=False)
            )
        )
    else:
        click.echo(api_call(lambda: jobs.logs(job_id, address=address)), nl=False)


@click.command(epilog=EPILOG_JOBS)
@click.argument("job_id")
@JOBS_ADDRESS
def cancel(job_id: str, address: str) -> None:
    """Stop job JOB_ID (its driver and tasks); outputs already committed stay, re-runs resume."""
    from batchsep.jobs import run as jobs

    stopped = api_call(lambda: jobs.cancel(job_id, address=address))
    click.echo(f"job {job_id}: " + ("stop requested" if stopped else "was not running"))
