"""Spark's Python daemon for batch prediction, warmed up while the JVM starts.

A local Spark job first starts its JVM (two seconds or more), then PySpark's daemon, which forks
a Python worker per core; each worker then imported TensorFlow and prodml (seconds of CPU each)
before scoring a row. For a local master, :func:`spark_job.run` starts a *warm daemon* before the
JVM (:class:`WarmDaemon`, ``python -m <this module> --warm FD JOB_PID SOCKET``): it imports TensorFlow,
PySpark's worker and prodml's scoring code while the JVM starts, then waits on a Unix socket.

Spark runs this module as its daemon (``spark.python.daemon.module``). Run by Spark, it connects
to the warm daemon named in its environment (``PRODML_SPARK_WARM_DAEMON``) and hands it its
standard streams (Spark's pipes) and environment (the worker secret and settings); the warm
daemon then runs PySpark's own daemon loop, :func:`pyspark.daemon.manager`, on them, and forks
workers that have everything imported. This process stays as the daemon Spark knows: it passes
a SIGTERM on and exits when the warm daemon does. Only imports happen before the fork;
TensorFlow's runtime (thread pools, the eager context) starts with the model load, in each worker.

Without a warm daemon (a cluster's executors, a session that existed before the job, a warm
daemon that has gone), this is PySpark's daemon unchanged.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from typing import Optional

WARM_ENV = "PRODML_SPARK_WARM_DAEMON"
_STREAMS = (0, 1, 2)
_LENGTH_BYTES = 8


class WarmDaemon:
    """A warm daemon started by the driver; :meth:`stop` ends it (and the workers it forked)."""

    def __init__(self):
        self._folder = tempfile.mkdtemp(prefix="prodml-spark-")
        self.socket_path = os.path.join(self._folder, "daemon.sock")
        # Listening before the warm daemon even starts: Spark's daemon may connect at any time.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(self.socket_path)
            server.listen(1)
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, "--warm", str(server.fileno()), str(os.getpid()), self.socket_path],
                pass_fds=[server.fileno()], stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()  # PySpark's SIGTERM handler also ends the workers it forked
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        _remove_socket(self.socket_path)


def _remove_socket(path: str) -> None:
    for remove in (lambda: os.remove(path), lambda: os.rmdir(os.path.dirname(path))):
        try:
            remove()
        except FileNotFoundError:
            pass


def _serve_warm(server_fd: int, job_pid: int, socket_path: str) -> None:
    """The warm daemon: imports, waits for Spark's daemon process, then runs PySpark's daemon loop.

    It removes the socket once it is connected or its job has gone, so a killed job leaves nothing.
    """
    server = socket.socket(fileno=server_fd)
    from prodml.components.common.heavy_imports import import_tensorflow

    import_tensorflow()
    from pyspark import daemon

    from prodml.components.batch_predict import worker  # noqa: F401 - what every task runs

    server.settimeout(1.0)
    while True:
        try:
            conn, _ = server.accept()
            break
        except TimeoutError:
            if os.getppid() != job_pid:  # the job that started it is gone
                _remove_socket(socket_path)
                return
    server.close()
    _remove_socket(socket_path)
    conn.settimeout(None)
    message, fds, _, _ = socket.recv_fds(conn, 1 << 16, len(_STREAMS))
    length = int.from_bytes(message[:_LENGTH_BYTES], "big")
    payload = message[_LENGTH_BYTES:]
    while len(payload) < length:
        payload += conn.recv(length - len(payload))
    for fd, stream in zip(fds, _STREAMS):
        os.dup2(fd, stream)
        os.close(fd)
    os.environ.clear()
    os.environ.update(json.loads(payload))
    conn.sendall(str(os.getpid()).encode())
    # The connection stays open, unused: Spark's daemon process waits for it to close.
    daemon.manager()


def _hand_over(socket_path: str) -> Optional[int]:
    """Hands this process's streams and environment to the warm daemon; its pid, or None if it is not there."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(socket_path)
        payload = json.dumps(dict(os.environ)).encode()
        socket.send_fds(conn, [len(payload).to_bytes(_LENGTH_BYTES, "big") + payload], list(_STREAMS))
        pid = int(conn.recv(32) or 0)
    except (OSError, ValueError):
        return None
    if not pid:
        return None

    def pass_on(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, pass_on)
    while conn.recv(1):  # returns b"" when the warm daemon exits
        pass
    return pid


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--warm":
        _serve_warm(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return
    warm = os.environ.get(WARM_ENV)
    if warm and _hand_over(warm):
        return
    from pyspark import daemon

    daemon.manager()


if __name__ == "__main__":
    main()
