"""Independent tasks of a study, run in order here or as Ray tasks (``--workers`` / ``--ray-address``).

``parallel_map(fn, context, tasks)`` returns ``[fn(context, t) for t in tasks]``. With more than one
worker, or a cluster address, each task becomes a Ray task on a local Ray instance started here
(``ray.init(num_cpus=workers)``) or on the cluster at ``ray_address``; ``context`` (models, data)
goes into Ray's object store once and every task reads it from there. Results come back in task
order, so a study writes the same rows either way. Ray is imported only on that path.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any, Callable, Sequence


REACH_TIMEOUT_S = 10.0  # a cluster's head answers a TCP connect within milliseconds; Ray itself would retry for minutes
_JOINABLE: set[str] = set()  # addresses already checked in this process (the check runs once per address)
RAY_PROBE_TIMEOUT_S = 25.0  # Ray gives up on an unreachable head after ~20 s with its own reason; the check stays within 30 s
PATH_VARIABLES = ("WXY_ZOO", "WXY_DATA", "WXY_DEVICES")  # folders a worker is pointed at like this process


def check_parallel(workers: int, ray_address: str | None) -> None:
    """--workers N ≥ 1; --ray-address needs Ray installed and a head that answers (checked before any work starts)."""
    if workers < 1:
        raise ValueError(f"--workers must be ≥ 1, got {workers}")
    if workers > 1 or ray_address:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError("--workers / --ray-address run on Ray, which is not installed: "
                              "pip install 'ray==2.60.0' (or run scripts/setup.sh)") from None
    if ray_address:
        check_reachable(ray_address)


def check_reachable(ray_address: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Refuse, within ``timeout_s``, a --ray-address HOST:PORT where nothing answers.

    ``ray.init`` on a dead address retries for minutes and does not let Ctrl-C through; a plain TCP
    connect to the head's port says the same in milliseconds. 'auto' / 'local' (Ray's own lookup)
    are left to Ray.
    """
    if ray_address in ("auto", "local") or ray_address in _JOINABLE:
        return
    hostport = ray_address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--ray-address {ray_address!r}: expected HOST:PORT of a Ray head (e.g. 10.0.0.1:6379), "
                         "'auto' or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or type(exc).__name__)
        raise ValueError(f"--ray-address {ray_address}: no Ray head answers there ({why}); start one with "
                         "'ray start --head' on that machine, fix the address, or drop --ray-address") from None
    # Something listens; only a Ray head answers ray.init. Asked in a child process, which can be stopped:
    # ray.init against another service (a web server, say) would hang this one for minutes.
    probe = "import sys, ray; ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False); ray.shutdown()"
    try:
        done = subprocess.run([sys.executable, "-c", probe, ray_address], capture_output=True, text=True,
                              timeout=RAY_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ValueError(f"--ray-address {ray_address}: something listens there but no Ray head answered within "
                         f"{RAY_PROBE_TIMEOUT_S:.0f} s; give the address of a Ray head (ray start --head prints it), "
                         "or drop --ray-address") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1][:200]
        raise ValueError(f"--ray-address {ray_address}: Ray could not join it ({last}); give the address of a Ray "
                         "head (ray start --head prints it), or drop --ray-address")
    _JOINABLE.add(ray_address)


def runs_on_ray(workers: int, ray_address: str | None) -> str | None:
    """Where --workers / --ray-address send a study's tasks, for its progress line; None: here, in order."""
    if workers <= 1 and not ray_address:
        return None
    return f"Ray tasks ({ray_address or f'{workers} local workers'})"


def threads_per_worker(workers: int) -> int:
    """Torch threads per local worker so that the workers together do not oversubscribe the cores."""
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


def _run(fn: Callable[[Any, Any], Any], context: Any, task: Any, threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    return fn(context, task)


def parallel_map(fn: Callable[[Any, Any], Any], context: Any, tasks: Sequence[Any], *, workers: int = 1,
                 ray_address: str | None = None, on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``fn(context, task)`` for every task, in task order: here, or as Ray tasks (see the module docstring).
    ``on_result(i, result)`` is called as each task finishes (in the order they finish), say to report progress."""
    if workers <= 1 and not ray_address:
        results = []
        for i, t in enumerate(tasks):
            results.append(fn(context, t))
            if on_result is not None:
                on_result(i, results[-1])
        return results
    check_parallel(workers, ray_address)
    import ray

    if not ray.is_initialized():
        _init_keeping_signals(ray, workers, ray_address)
    # on a cluster every worker is a separate CPU somewhere: one torch thread each
    threads = 1 if ray_address else threads_per_worker(workers)
    remote = ray.remote(num_cpus=1)(_run)
    shared = ray.put(context)
    refs = [remote.remote(fn, shared, t, threads) for t in tasks]
    try:
        if on_result is None:
            return ray.get(refs)
        order, results, pending = {ref: i for i, ref in enumerate(refs)}, [None] * len(refs), list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                results[order[ref]] = ray.get(ref)
                on_result(order[ref], results[order[ref]])
        return results
    except ray.exceptions.RayTaskError as exc:
        # the task's own exception, as the sequential run raises it: a user error stays the one line it names (Ray's
        # wrapper carries the remote traceback in its message), a bug shows the wrapper's remote traceback as its cause
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception):
            raise cause from exc
        raise


def _init_keeping_signals(ray: Any, workers: int, ray_address: str | None) -> None:
    """ray.init, then the command's own SIGTERM / SIGHUP / SIGINT handlers back in place: Ray installs its own,
    which end the process without the one line and the manifest record that a signal must leave."""
    main = threading.current_thread() is threading.main_thread()
    kept = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)} if main else {}
    # the zoo, data and device folders this process was pointed at (WXY_ZOO, WXY_DATA, WXY_DEVICES) are the workers'
    # too, made absolute (a cluster's workers neither inherit this environment nor start in this folder); a job
    # submitted with its own runtime env already carries them, and Ray refuses to merge a variable set twice
    submitted = "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ
    ours = {} if submitted else {k: os.path.abspath(v) if k in PATH_VARIABLES and v else v
                                 for k, v in os.environ.items() if k.startswith("WXY_")}
    try:
        if ray_address:
            ray.init(address=ray_address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": ours} if ours else None)
        else:
            # workers import wxy_hw as this process does (an installed package or PYTHONPATH)
            here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {**ours, "PYTHONPATH": path}})
    finally:
        for sig, handler in kept.items():
            if handler is not None:
                signal.signal(sig, handler)
