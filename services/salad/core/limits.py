"""The process's open-files limit, raised before a service or the fleet benchmark opens its connections."""

import logging
import resource

OPEN_FILES_CEILING = 1_048_576  # where the hard limit is "unlimited" (macOS), which setrlimit refuses


def raise_open_files_limit() -> None:
    """Raise the soft limit of open files to the hard one, as Go programs do by themselves: each worker keeps
    two connections open to its Master, and some container runtimes set a soft limit of 1,024. A refusal
    leaves the limit as it was, with a warning: the service still runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as exc:
        logging.getLogger(__name__).warning("open files stay limited to %d: %s", soft, exc)
