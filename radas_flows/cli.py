"""The ``radas`` command line: cluster availability and experiment management."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from radas_flows.errors import RadasError
from radas_flows.inputs.rules import current_user_name

__all__ = ["build_parser", "main"]


def _default_user() -> str:
    try:
        return current_user_name()
    except RuntimeError:  # no user name in the environment or password database
        return "user"


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds greater than 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds greater than 0; use for example 5"
        )
    return value


def _user_name(text: str) -> str:
    """An argparse type: a radas user name (as ``user_name`` of a run)."""
    from radas_flows.inputs.rules import check_user_name

    try:
        return check_user_name(text)
    except RadasError as e:
        raise argparse.ArgumentTypeError(str(e).replace("user_name=", "--user ")) from e


def _cluster_name(text: str) -> str:
    """An argparse type: a cluster name as the registry writes it."""
    from radas_flows.inputs.rules import is_cluster_name

    if not is_cluster_name(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a cluster name (letters, digits, '.', '_' and '-', starting with "
            "a letter or digit); use a name that `radas clusters` lists"
        )
    return text


def _cmd_clusters(args: argparse.Namespace) -> int:
    from radas_flows.clusters import get_cluster_availability

    print(get_cluster_availability(timeout=args.timeout))
    return 0


def _cmd_experiments(args: argparse.Namespace) -> int:
    from radas_flows.management import get_client

    get_client(args.user, f"cluster:{args.cluster}", timeout=args.timeout).display_experiments()
    return 0


def _check_stop_user(user: str, other_user: bool) -> None:
    """Refuse ``--user`` other than the caller's login name unless ``--other-user`` says so."""
    if other_user:
        return
    try:
        login = current_user_name()
    except RuntimeError as e:
        raise PermissionError(
            f"cannot tell whether --user {user} is you: {e} Add --other-user to stop a job of "
            f"user {user!r} anyway."
        ) from e
    if user != login:
        raise PermissionError(
            f"--user {user} is not your login name ({login!r}): radas stop stops only your own "
            f"jobs. If jobs of user {user!r} are yours to stop (your runs give that user_name, "
            "or you look after this cluster), add --other-user."
        )


def _cmd_stop(args: argparse.Namespace) -> int:
    from radas_flows.management import get_client

    _check_stop_user(args.user, args.other_user)
    client = get_client(args.user, f"cluster:{args.cluster}", timeout=args.timeout)
    client.stop_job_by_id(args.job_id, wait=args.wait)
    return 0


def _add_cluster_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster",
        required=True,
        type=_cluster_name,
        metavar="NAME",
        help="a cluster name from `radas clusters`",
    )
    parser.add_argument(
        "--user",
        default=_default_user(),
        type=_user_name,
        metavar="USER",
        help="the user whose jobs to manage (default: the login name)",
    )
    parser.add_argument(
        "--timeout", type=_seconds, default=5.0, help="seconds to wait for the cluster (default 5)"
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the ``radas`` argument parser (one subparser per command).

    Each subcommand sets ``func``, called with the parsed arguments; it returns the exit code.

    Example:
        >>> args = build_parser().parse_args(["clusters"])
        >>> args.command
        'clusters'
    """
    parser = argparse.ArgumentParser(
        prog="radas", description="Run and manage radas experiments on Ray clusters."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    clusters = commands.add_parser(
        "clusters", help="list the registered clusters with their status and hints"
    )
    clusters.add_argument(
        "--timeout", type=_seconds, default=2.0, help="seconds to wait for each cluster (default 2)"
    )
    clusters.set_defaults(func=_cmd_clusters)

    experiments = commands.add_parser(
        "experiments", help="list your experiments on a cluster, with stop commands"
    )
    _add_cluster_args(experiments)
    experiments.set_defaults(func=_cmd_experiments)

    stop = commands.add_parser(
        "stop",
        help="stop one of your jobs on a cluster",
        description=(
            "Stop one radas job on a cluster. The job's metadata must name --user, and --user "
            "must be your login name (the default) unless --other-user is given. These checks "
            "guard against stopping someone else's job by mistake; they are not access "
            "control: whoever holds the cluster's token can stop any job with `ray job stop`."
        ),
    )
    stop.add_argument("job_id", metavar="JOB_ID", help="the job id from `radas experiments`")
    _add_cluster_args(stop)
    stop.add_argument("--wait", action="store_true", help="wait until the job has stopped")
    stop.add_argument(
        "--other-user",
        action="store_true",
        help=(
            "allow --user to name someone other than your login name (your runs use another "
            "user_name, or you look after the cluster)"
        ),
    )
    stop.set_defaults(func=_cmd_stop)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``radas`` command line.

    Args:
        argv: The arguments (without the program name); ``sys.argv[1:]`` by default.

    Returns:
        The exit code: 0 on success, 1 when the command failed, 2 on a usage error.

    Example:
        >>> main(["clusters"])  # doctest: +SKIP
        All available clusters are listed below, with status and suggestions of when to use which cluster:
        - [status: online] atol-gpu-5090: 32G GRAM per GPU, choose as the default choice
        0
    """  # noqa: E501
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except (
        RadasError,
        ValueError,
        LookupError,
        PermissionError,
        RuntimeError,
        ConnectionError,
        TimeoutError,
    ) as e:
        print(f"radas {args.command}: error: {e}", file=sys.stderr)
        return 1
    return code
