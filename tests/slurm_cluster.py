"""A real one-node SLURM cluster on 127.0.0.1 with a fake GPU, for tests that submit real jobs.

`one_node_cluster(tmp)` installs the Debian packages if they are missing, writes
/etc/slurm/slurm.conf and gres.conf, starts munged, slurmctld and slurmd as background processes
(their logs, state, spool, munge key and socket all under `tmp`), waits until `sinfo` shows the node
idle, and on exit cancels every job, stops every process it started and removes the files it wrote
under /etc. It skips (pytest.skip, with the reason) when not root, when apt or the packages are not
available, or when SLURM is already running or configured on this machine.

What a bare machine needs, and why (the README's SLURM section says the same for cluster admins):
- The config must be /etc/slurm/slurm.conf: the executor plugin's job step strips every SLURM_*
  variable, SLURM_CONF included, before its `srun`, so that `srun` reads the default path.
- No slurmdbd: `sacct` fails, so Snakemake has to poll with `squeue` (`--slurm-status-command
  squeue`), and `squeue` shows a finished job only for MinJobAge seconds; set high here so that the
  test can read every job of a run back with `scontrol show job` at the end.
- A GPU in gres.conf without a `File=` is dropped and the node drained; a character device with the
  NVIDIA major number (`mknod nvidia0 c 195 0`) makes `--gpus=1` schedulable (the job gets
  CUDA_VISIBLE_DEVICES=0; the embedded model still runs on the CPU).
- Without DefMemPerCPU a job with no memory request takes the node's whole memory.
- The node declares two GPUs and what the shipped profile asks for each GPU job (8 CPUs, 64 GB), and
  SlurmdParameters=config_overrides accepts that on a smaller machine: nothing enforces it here
  (proctrack/linuxproc, task/none), so the test runs the profile's requests unchanged.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel")
ETC = Path("/etc/slurm")
MARK = "# written by tests/slurm_cluster.py"
PARTITION = "gpu"
NVIDIA_MAJOR = 195


@dataclass
class Cluster:
    dir: Path
    node: str
    partition: str
    cpus: int
    memory_mb: int
    gpus: int
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def log(self, daemon: str) -> Path:
        return self.dir / f"{daemon}.log"

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (finished ones for MinJobAge), as `scontrol show job` fields."""
        out = run(["scontrol", "show", "job", "--details", "--oneliner"], check=False).stdout
        return [parse_fields(line) for line in out.splitlines() if line.startswith("JobId=")]


def run(cmd: list[str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)


def parse_fields(line: str) -> dict[str, str]:
    """`Key=value Key2=value two ...` (scontrol --oneliner) into a dict; a value may hold spaces."""
    fields: dict[str, str] = {}
    key = None
    for word in line.split(" "):
        name, eq, value = word.partition("=")
        if eq and name and (name[0].isupper() or name.startswith("_")) and " " not in name:
            key = name
            fields[key] = value
        elif key is not None:
            fields[key] += " " + word
    return {k: v.strip() for k, v in fields.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_installed() -> None:
    """The daemons and client commands, from apt where missing; skips where that cannot be done."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("a SLURM cluster needs root: it installs packages, writes /etc/slurm and runs slurmd")
    if all(shutil.which(b) for b in BINARIES):
        return
    if not shutil.which("apt-get"):
        pytest.skip(f"SLURM is not installed and there is no apt-get to install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
    ):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        except subprocess.TimeoutExpired:
            pytest.skip(f"`{' '.join(cmd)}` took over 10 minutes")
        if proc.returncode != 0:
            pytest.skip(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]}")
    missing = [b for b in BINARIES if not shutil.which(b)]
    if missing:
        pytest.skip(f"installed {' '.join(PACKAGES)}, still missing {' '.join(missing)}")


def foreign_slurm() -> str | None:
    """Why this machine's SLURM must be left alone, or None."""
    for proc in psutil.process_iter(["pid", "name"]):
        if proc.info["name"] in ("slurmctld", "slurmd", "slurmdbd"):
            return (
                f"{proc.info['name']} (pid {proc.info['pid']}) is already running; the test did not start it"
            )
    for name in ("slurm.conf", "gres.conf"):
        path = ETC / name
        if path.exists() and not path.read_text(errors="replace").startswith(MARK):
            return f"{path} exists (a real cluster's config?); the test will not replace it"
    return None


def slurm_conf(c: Cluster, ctld_port: int, slurmd_port: int) -> str:
    d = c.dir
    return f"""{MARK} for a test run; removed when it ends.
ClusterName=journeytest
SlurmctldHost={c.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={c.log("slurmctld")}
SlurmdLogFile={c.log("slurmd")}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
DefMemPerCPU=1000
MinJobAge=3600
KillWait=5
InactiveLimit=0
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={c.node} NodeAddr=127.0.0.1 CPUs={c.cpus} RealMemory={c.memory_mb} Gres=gpu:{c.gpus} State=UNKNOWN
PartitionName={c.partition} Nodes={c.node} Default=YES MaxTime=INFINITE State=UP
"""


def gres_conf(c: Cluster) -> str:
    devices = f"{c.dir / 'dev'}/nvidia[0-{c.gpus - 1}]" if c.gpus > 1 else f"{c.dir / 'dev'}/nvidia0"
    return f"{MARK} for a test run; removed when it ends.\nNodeName={c.node} Name=gpu File={devices}\n"


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} not written)"


def wait_idle(c: Cluster, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        for name, proc in c.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail(c.log(name))}")
        info = run(["sinfo", "--noheader", "--Node", "--format=%N %t"], check=False)
        state = info.stdout.strip() + info.stderr.strip()
        if info.returncode == 0 and state.split()[-1:] == ["idle"]:
            return
        time.sleep(0.2)
    reasons = run(["sinfo", "--list-reasons"], check=False).stdout
    raise RuntimeError(
        f"node not idle after {timeout:.0f} s: {state!r} {reasons}\n"
        f"slurmctld:\n{tail(c.log('slurmctld'))}\nslurmd:\n{tail(c.log('slurmd'))}"
    )


def stepd_pids() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "slurmstepd"}


def stop(proc: subprocess.Popen, wait: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def kill_tree(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        parent = psutil.Process(pid)
        for p in [*parent.children(recursive=True), parent]:
            with contextlib.suppress(psutil.Error):
                p.kill()


@contextlib.contextmanager
def one_node_cluster(tmp: Path, gpus: int = 2, cpus: int = 32, memory_mb: int = 262144) -> Iterator[Cluster]:
    """The node declares `gpus` fake GPUs and, by default, room for that many of the profile's GPU jobs
    (8 CPUs, 64 GB each) beside the CPU jobs."""
    ensure_installed()
    reason = foreign_slurm()
    if reason:
        pytest.skip(reason)
    tmp.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o755)
    c = Cluster(tmp, socket.gethostname().split(".")[0], PARTITION, cpus, memory_mb, gpus)
    for sub in ("state", "spool", "munge", "dev"):
        (tmp / sub).mkdir(exist_ok=True)
        (tmp / sub).chmod(0o755)  # munged refuses a socket directory others cannot enter
    try:
        for i in range(gpus):
            os.mknod(tmp / "dev" / f"nvidia{i}", 0o666 | stat.S_IFCHR, os.makedev(NVIDIA_MAJOR, i))
    except OSError as e:
        pytest.skip(f"cannot create the fake GPU's device node (mknod): {e}")
    key = tmp / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    before = stepd_pids()
    written: list[Path] = []
    made_etc = not ETC.exists()
    try:
        ETC.mkdir(exist_ok=True)
        for name, text in (
            ("slurm.conf", slurm_conf(c, free_port(), free_port())),
            ("gres.conf", gres_conf(c)),
        ):
            (ETC / name).write_text(text)
            written.append(ETC / name)
        m = tmp / "munge"
        daemons = {
            "munged": [
                "munged", "--foreground", "--force", f"--socket={m}/munge.socket", f"--key-file={key}",
                f"--log-file={c.log('munged')}", f"--pid-file={m}/munged.pid", f"--seed-file={m}/munged.seed",
            ],
            "slurmctld": ["slurmctld", "-D", "-i"],
            "slurmd": ["slurmd", "-D", "-N", c.node],
        }  # fmt: skip
        for name, cmd in daemons.items():
            with open(tmp / f"{name}.out", "w") as out:
                c.procs[name] = subprocess.Popen(
                    cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            if name == "munged":
                deadline = time.monotonic() + 10
                while not (m / "munge.socket").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
        wait_idle(c)
        yield c
    finally:
        # Jobs first (their slurmstepd outlives slurmd), then the daemons in reverse order.
        if c.procs.get("slurmctld") and c.procs["slurmctld"].poll() is None:
            run(["scancel", "--full", f"--partition={c.partition}"], check=False)
            deadline = time.monotonic() + 30
            while stepd_pids() - before and time.monotonic() < deadline:
                time.sleep(0.2)
        for name in reversed(list(c.procs)):
            stop(c.procs[name])
        for pid in stepd_pids() - before:
            kill_tree(pid)
        for path in written:
            path.unlink(missing_ok=True)
        if made_etc:
            with contextlib.suppress(OSError):
                ETC.rmdir()
