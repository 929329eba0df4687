"""A real one-node SLURM cluster on this machine, for tests that submit, signal and requeue sbatch jobs.

``with LocalSlurmCluster() as cluster:`` installs the Debian packages when the binaries are missing
(root and apt-get only), starts munged (unless one already answers), slurmctld and slurmd, and waits
for the node to be idle; leaving the block cancels the jobs and stops every daemon it started.

Everything SLURM writes lives in a fresh temporary directory: slurm.conf, state, spool, logs, pid
files. Daemons and clients find that configuration through the ``SLURM_CONF`` environment variable
(:meth:`LocalSlurmCluster.env`); it is reliable for slurmctld, slurmd, slurmstepd and the clients,
so /etc/slurm is never written. The ports are free ones picked at start, so a stale daemon of an
earlier run cannot collide. munge is the exception: it uses the system key and socket
(/etc/munge/munge.key, /run/munge), as SLURM's auth/munge plugin expects. Because munged, the node
name and apt-get are shared by the whole machine, one cluster runs at a time: a cluster holds a file
lock (:data:`CLUSTER_LOCK`) from installing to stopping, so test files that run in parallel (``make
test`` runs pytest-xdist workers) wait for each other's cluster instead of killing its munged.

The container has no usable cgroups: proctrack/linuxproc, task/none, jobacct_gather/none, no
accounting (jobcomp/filetxt keeps the final state of purged jobs).

Findings on SLURM 22.05 (Debian 12):

- Signals: ``scancel --signal=USR1 JOB`` (neither ``--batch`` nor ``--full``) signals the job steps,
  i.e. the srun-launched tasks, and not the batch shell: the same target as ``sbatch --signal=USR1@T``
  without ``B:``. ``--full`` also signals the batch shell, which bash's default action for SIGUSR1
  kills (the job FAILS); ``--batch`` signals only the batch shell, so the tasks never see it.
- Requeue: ``scontrol requeue`` sets the job's eligible time about 120 s ahead; :meth:`requeue` (by
  default) and :meth:`expedite` make it eligible 2 s ahead with ``scontrol update JobId=.. StartTime=now+2``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from filelock import FileLock

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("slurmctld", "slurmd", "sbatch", "srun", "scontrol", "scancel", "squeue", "munged", "munge")
TERMINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
)
SIGNAL_TARGETS = {"steps": [], "batch": ["--batch"], "full": ["--full"]}
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_DIRS = (Path("/etc/munge"), Path("/run/munge"), Path("/var/log/munge"), Path("/var/lib/munge"))
_FIELD = re.compile(r"(?:^|\s)([A-Za-z][\w:/]*)=")


class SlurmUnavailable(RuntimeError):
    """SLURM is not installed and cannot be installed here (not root, no apt-get, apt failed)."""


class SlurmError(RuntimeError):
    """The cluster did not start, or a job did not reach the expected state."""


def _run(
    args: list[str], env: Mapping[str, str] | None = None, check: bool = True, timeout: float = 60, **kw
) -> subprocess.CompletedProcess[str]:
    """Run a command (argument list, never a shell string) and capture its text output."""
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise SlurmError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def _tail(path: Path, lines: int = 40) -> str:
    """The last lines of a text file, or a note that it does not exist."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"<{path}: {error.strerror}>"


def parse_fields(line: str) -> dict[str, str]:
    """``Key=Value Key2=Value with spaces ...`` (``scontrol show -o``) as a dict."""
    matches = list(_FIELD.finditer(line.strip()))
    fields = {}
    for match, following in zip(matches, matches[1:] + [None]):
        end = following.start() if following else len(line.strip())
        fields[match.group(1)] = line.strip()[match.end() : end].strip()
    return fields


def missing_binaries() -> list[str]:
    """The SLURM and munge programs that are not on PATH (sbin included)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in BINARIES if shutil.which(name, path=path) is None]


def ensure_installed() -> None:
    """Install the Debian packages with apt-get when a binary is missing. SlurmUnavailable (tests skip)
    only where installing is impossible (not root, no apt-get); a failed install as root is a SlurmError,
    so CI, which runs as root, fails instead of skipping."""
    missing = missing_binaries()
    if not missing:
        return
    reason = f"SLURM binaries missing ({', '.join(missing)})"
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"{reason} and not root, cannot apt-get install {' '.join(PACKAGES)}")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"{reason} and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
        result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise SlurmError(f"{reason}; `{' '.join(args)}` failed:\n{output}")
    if still := missing_binaries():
        raise SlurmError(f"still missing after apt-get install: {', '.join(still)}")


def _free_ports(count: int) -> list[int]:
    """Distinct TCP ports that are free on localhost right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def munge_works() -> bool:
    """Whether a munged answers on the default socket."""
    try:
        return _run(["munge", "-n"], check=False, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def prepare_munge() -> None:
    """Create the munge directories and key (owned by munge, key mode 0400) where they are missing,
    and remove the socket, lock and pid files a dead munged left (only called when none answers)."""
    for name in ("munge.socket.2", "munge.socket.2.lock", "munged.pid"):
        Path("/run/munge", name).unlink(missing_ok=True)
    for directory in MUNGE_DIRS:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(directory, "munge", "munge")
    Path("/run/munge").chmod(0o755)
    if not MUNGE_KEY.exists():
        MUNGE_KEY.write_bytes(os.urandom(1024))
    shutil.chown(MUNGE_KEY, "munge", "munge")
    MUNGE_KEY.chmod(0o400)


def slurm_conf(root: Path, node: str, cpus: int, ctld_port: int, slurmd_port: int) -> str:
    """A minimal slurm.conf for one node without cgroups or accounting, everything under ``root``."""
    settings = {
        "ClusterName": "ltxtest",
        "SlurmctldHost": f"{node}(127.0.0.1)",
        "SlurmctldPort": ctld_port,
        "SlurmdPort": slurmd_port,
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        "StateSaveLocation": root / "state",
        "SlurmdSpoolDir": root / "spool",
        "SlurmctldPidFile": root / "slurmctld.pid",
        "SlurmdPidFile": root / "slurmd.pid",
        "SlurmctldLogFile": root / "log" / "slurmctld.log",
        "SlurmdLogFile": root / "log" / "slurmd.log",
        "SlurmctldDebug": "info",
        "SlurmdDebug": "info",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
        "JobCompType": "jobcomp/filetxt",
        "JobCompLoc": root / "log" / "jobcomp.txt",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_CPU",
        "SlurmdParameters": "config_overrides",
        "SchedulerType": "sched/builtin",
        "MpiDefault": "none",
        "SwitchType": "switch/none",
        "MailProg": shutil.which("true") or "/bin/true",
        "ReturnToService": 2,
        "JobRequeue": 1,
        "MinJobAge": 120,
        "KillWait": 5,
        "InactiveLimit": 0,
    }
    lines = [f"{key}={value}" for key, value in settings.items()]
    lines.append(f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN")
    lines.append(f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


CLUSTER_LOCK = Path(tempfile.gettempdir()) / "ltx-local-slurm-cluster.lock"


class LocalSlurmCluster:
    """One slurmctld + one slurmd on this machine, configured in a temporary directory."""

    def __init__(self, cpus: int | None = None, start_timeout: float = 60.0, keep_dir: bool = False) -> None:
        self.node = socket.gethostname().split(".")[0]
        self.cpus = max(2, cpus or os.cpu_count() or 2)
        self.start_timeout = start_timeout
        self.keep_dir = keep_dir
        self.root: Path | None = None
        self._daemons: dict[str, subprocess.Popen] = {}
        self._last: dict[int, dict[str, str]] = {}
        self._lock = FileLock(CLUSTER_LOCK, is_singleton=False)

    # -- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> LocalSlurmCluster:
        self._lock.acquire()  # another process's cluster first stops (see the module docstring)
        try:
            ensure_installed()
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def conf_path(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "slurm.conf"

    def start(self) -> None:
        """Write the configuration and start munged (if needed), slurmctld and slurmd; wait for idle."""
        self.root = Path(tempfile.mkdtemp(prefix="ltx-slurm-"))
        for name in ("state", "spool", "log"):
            (self.root / name).mkdir()
        ctld_port, slurmd_port = _free_ports(2)
        self.conf_path.write_text(slurm_conf(self.root, self.node, self.cpus, ctld_port, slurmd_port))
        self._start_munge()
        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self._spawn("slurmd", ["slurmd", "-D", "-N", self.node])
        self._wait_node_idle()

    def stop(self) -> None:
        """Cancel the jobs, shut down the daemons this cluster started, remove its directory and release
        the machine-wide lock."""
        if "slurmctld" in self._daemons and self._daemons["slurmctld"].poll() is None:
            self._cancel_all()
            _run(["scontrol", "shutdown"], env=self.env(), check=False, timeout=30)
        for name in ("slurmd", "slurmctld"):
            self._terminate(name)
        self._terminate("munged", grace=0)
        self._daemons.clear()
        if self.root is not None and not self.keep_dir:
            shutil.rmtree(self.root, ignore_errors=True)
        if self._lock.is_locked:
            self._lock.release()

    def _start_munge(self) -> None:
        """Start munged as user munge unless one already answers (then it is left alone)."""
        if munge_works():
            return
        prepare_munge()
        self._spawn("munged", ["munged", "-F"], user="munge", group="munge", extra_groups=[])
        self._poll(munge_works, 20, "munged did not answer")

    def _spawn(self, name: str, args: list[str], **kwargs) -> None:
        """Start a foreground daemon with its output in log/<name>.out; keep its handle."""
        assert self.root is not None
        binary = shutil.which(args[0], path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
        with open(self.root / "log" / f"{name}.out", "ab") as out:
            self._daemons[name] = subprocess.Popen(
                [binary or args[0], *args[1:]],
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )

    def _terminate(self, name: str, grace: float = 15.0) -> None:
        """Give a daemon this cluster started ``grace`` seconds to exit, then SIGTERM, then SIGKILL."""
        process = self._daemons.get(name)
        if process is None:
            return
        for action, timeout in ((None, grace), (process.terminate, 10.0), (process.kill, 10.0)):
            if action is not None and process.poll() is None:
                action()
            try:
                process.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                continue

    def _cancel_all(self) -> None:
        """Kill every job and wait (briefly) until the queue is empty, so no slurmstepd is left."""
        env = self.env()
        _run(["scancel", f"--user={os.geteuid()}"], env=env, check=False)

        def queue_empty() -> bool:
            result = _run(["squeue", "-h", "-o", "%i"], env=env, check=False)
            return result.returncode == 0 and not result.stdout.strip()

        try:
            self._poll(queue_empty, 30, "jobs did not end")
        except SlurmError:
            pass

    def _wait_node_idle(self) -> None:
        """Wait for the node to be IDLE; SlurmError with the daemon logs on timeout or daemon exit."""

        def idle() -> bool:
            for name, process in self._daemons.items():
                if process.poll() is not None:
                    raise SlurmError(f"{name} exited ({process.returncode})\n{self.log_tails()}")
            result = _run(["scontrol", "show", "node", "-o", self.node], env=self.env(), check=False)
            return result.returncode == 0 and parse_fields(result.stdout).get("State") == "IDLE"

        self._poll(idle, self.start_timeout, f"node {self.node} not idle after {self.start_timeout:.0f} s")

    def _poll(self, ready, timeout: float, message: str, interval: float = 0.5) -> None:
        """Call ``ready()`` until it is true; SlurmError(message + log tails) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise SlurmError(f"{message}\n{self.log_tails()}")
            time.sleep(interval)

    def log_tails(self, lines: int = 30) -> str:
        """The last lines of every daemon log (for error messages)."""
        if self.root is None:
            return "<cluster not started>"
        parts = [f"--- {path.name}\n{_tail(path, lines)}" for path in sorted((self.root / "log").glob("*"))]
        return "\n".join(parts)

    # -- jobs ---------------------------------------------------------------------------------------

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """os.environ without inherited SLURM job variables, plus SLURM_CONF (and ``extra``)."""
        prefixes = ("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")
        env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
        env["PATH"] = os.pathsep.join([env.get("PATH", ""), "/usr/sbin", "/sbin"])
        env["SLURM_CONF"] = str(self.conf_path)
        env.update(extra or {})
        return env

    def submit(
        self,
        script: Path,
        args: Iterable[str] = (),
        sbatch_options: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """``sbatch --parsable [options] script [args]``; the job id. ``env`` adds to :meth:`env`."""
        command = ["sbatch", "--parsable", *sbatch_options, str(script), *args]
        result = _run(command, env=self.env(env), cwd=cwd)
        job_id = int(result.stdout.strip().split(";")[0])
        self._fields(job_id)
        return job_id

    def _fields(self, job_id: int) -> dict[str, str]:
        """``scontrol show job -o`` as a dict; the last one seen (or the jobcomp record) once purged."""
        result = _run(["scontrol", "show", "job", "-o", str(job_id)], env=self.env(), check=False)
        if result.returncode == 0 and result.stdout.strip():
            self._last[job_id] = parse_fields(result.stdout.splitlines()[0])
            return self._last[job_id]
        fields = dict(self._last.get(job_id, {}))
        fields.update(self._jobcomp_record(job_id))
        return fields

    def _jobcomp_record(self, job_id: int) -> dict[str, str]:
        """The job's last line in the jobcomp/filetxt log (final JobState of a purged job)."""
        assert self.root is not None
        path = self.root / "log" / "jobcomp.txt"
        records = path.read_text().splitlines() if path.exists() else []
        mine = [parse_fields(line) for line in records if line.startswith(f"JobId={job_id} ")]
        return mine[-1] if mine else {}

    def job_field(self, job_id: int, name: str) -> str:
        """One field of ``scontrol show job`` (e.g. ``StdOut``, ``ExitCode``); "" when unknown."""
        return self._fields(job_id).get(name, "")

    def state(self, job_id: int) -> str:
        """The job state (RUNNING, PENDING, COMPLETED, ...; flags like ``+`` stripped), UNKNOWN if never seen."""
        state = self._fields(job_id).get("JobState", "UNKNOWN")
        return state.split("+")[0].split()[0] if state else "UNKNOWN"

    def restart_count(self, job_id: int) -> int:
        """How often the job was requeued (``Restarts``)."""
        value = self.job_field(job_id, "Restarts")
        return int(value) if value.isdigit() else 0

    def output_tail(self, job_id: int, lines: int = 40) -> str:
        """The last lines of the job's output file."""
        stdout = self.job_field(job_id, "StdOut")
        return _tail(Path(stdout), lines) if stdout else "<no StdOut known>"

    def wait(self, job_id: int, states: Iterable[str] = ("COMPLETED",), timeout: float = 60.0) -> str:
        """Poll until the job is in one of ``states``; SlurmError (with its output) on another end or timeout."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(job_id)
            if state in wanted:
                return state
            if state in TERMINAL_STATES or time.monotonic() > deadline:
                why = f"ended {state}" if state in TERMINAL_STATES else f"still {state} after {timeout:.0f} s"
                raise SlurmError(
                    f"job {job_id} {why}, expected {sorted(wanted)}; "
                    f"ExitCode={self.job_field(job_id, 'ExitCode')} Reason={self.job_field(job_id, 'Reason')}\n"
                    f"--- output\n{self.output_tail(job_id)}\n{self.log_tails(10)}"
                )
            time.sleep(0.5)

    def wait_running(self, job_id: int, timeout: float = 60.0) -> str:
        """Wait until the job runs."""
        return self.wait(job_id, {"RUNNING"}, timeout)

    def requeue(self, job_id: int, expedite: bool = True, timeout: float = 60.0) -> None:
        """``scontrol requeue``; with ``expedite`` also lift SLURM's ~120 s delay before it may start again."""
        _run(["scontrol", "requeue", str(job_id)], env=self.env())
        if expedite:
            self.expedite(job_id, timeout)

    def expedite(self, job_id: int, timeout: float = 60.0) -> None:
        """Wait until a requeued job is PENDING again (also after a requeue from inside the job, e.g.
        by Lightning) and make it eligible 2 s from now (``scontrol update StartTime=now+2``).

        Not at once: the requeue revokes the job's credential, and slurmd compares credential times in
        whole seconds, so a relaunch within the same second is killed ("Job credential revoked"). That
        race is what SLURM's own ~120 s delay avoids; 2 s is enough."""
        self.wait(job_id, {"PENDING"}, timeout)
        _run(["scontrol", "update", f"JobId={job_id}", "StartTime=now+2"], env=self.env())

    def signal(self, job_id: int, signal: str = "USR1", target: str = "steps") -> None:
        """Send a signal with scancel. ``steps`` (default): the srun tasks, as ``--signal`` without ``B:``
        does; ``batch``: only the batch shell; ``full``: both (bash dies of an untrapped USR1)."""
        options = SIGNAL_TARGETS[target]
        _run(["scancel", f"--signal={signal}", *options, str(job_id)], env=self.env())


@contextmanager
def slurm_cluster_or_skip(**kwargs) -> Iterator[LocalSlurmCluster]:
    """Yield a started :class:`LocalSlurmCluster`, or ``pytest.skip`` when SLURM is unavailable."""
    import pytest

    try:
        cluster = LocalSlurmCluster(**kwargs).__enter__()
    except SlurmUnavailable as error:
        pytest.skip(f"SLURM unavailable: {error}")
    try:
        yield cluster
    finally:
        cluster.stop()
