"""The real Snakefile with the shipped profiles/slurm on a real one-node SLURM cluster (127.0.0.1, a
fake GPU, tests/slurm_cluster.py): every model stage of every shard runs as its own SLURM job asking
for a GPU, the model jobs run the embedded model for real inside their jobs, a job that fails is
retried by the profile, and a local run on the SLURM run's response caches gives the same parquet.

Skips where the cluster cannot be installed or started (not root, no apt) or SLURM already runs here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from statistics import median

import pytest
import yaml

from tests.slurm_cluster import Cluster, one_node_cluster
from tests.snakemake_run import POLISH, ROOT, copy_caches, snakemake, snapshot

pytestmark = [pytest.mark.cluster, pytest.mark.snakemake, pytest.mark.vllm]

MODEL_RULES = ("trees", "thoughts_method", "polish")
RUN = "slurm"
# A small slice of the bundled problems: two shards of one problem, small trees, one polish attempt.
CONFIG = {
    "run": RUN,
    "problems": {"source": "pipeline/data/sample_problems.jsonl", "limit": 2, "shard_size": 1},
    "policy": {"width": 2, "max_depth": 2},
    "polish": POLISH,
}
SHARDS = ("shard-00000", "shard-00001")
# The job forced to fail on its first attempt (a model job: the retry must get the GPU again).
FAIL_ONCE = ("polish", "shard-00001")
FAIL_ENV = "JOURNEY_TEST_FAIL_ONCE"
# Imported by every Python process of the SLURM run (PYTHONPATH); only the first `python -m pipeline
# polish` of that shard acts: it claims the marker file and exits 3 before doing anything.
SITECUSTOMIZE = f'''
import os
marker = os.environ.get("{FAIL_ENV}")
if marker:
    argv = open("/proc/self/cmdline", "rb").read().decode(errors="replace").split("\\0")
    if argv[1:4] == ["-m", "pipeline", "{FAIL_ONCE[0]}"] and any("{FAIL_ONCE[1]}" in a for a in argv):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            os.write(2, b"injected failure: first attempt of {FAIL_ONCE[0]} {FAIL_ONCE[1]}\\n")
            os._exit(3)
'''
# Keep every job's SLURM log, and check a job's status 2 s after submitting it and after each job's end
# (the shipped profile waits 10 s): the jobs here are short, so this saves about a minute.
SLURM_FLAGS = ("--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs")


@dataclass
class SlurmRun:
    out: Path
    log: str
    wall_s: float
    run_id: str
    jobs: list[dict[str, str]]
    logdir: Path
    marker: Path
    cluster: Cluster


def write_config(tmp: Path, name: str) -> Path:
    config = tmp / f"{name}.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "output_root": str(tmp / name)}))
    return config


def slurm_time(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S").timestamp()


def job_of(run: SlurmRun, rule: str, shard: str, state: str = "COMPLETED") -> list[dict[str, str]]:
    comment = f"rule_{rule}_wildcards_{shard}" if shard else f"rule_{rule}"
    return [j for j in run.jobs if j.get("Comment") == comment and j["JobState"] == state]


def asks_gpu(job: dict[str, str]) -> bool:
    return "gpu:1" in job.get("TresPerJob", "") or "gpu:1" in job.get("JOB_GRES", "")


def engine_stats(sidecar: Path) -> dict[str, dict]:
    return json.loads(sidecar.read_text()).get("engines", {})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with one_node_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory) -> SlurmRun:
    tmp = tmp_path_factory.mktemp("slurm_run")
    config = write_config(tmp, "slurm-out")
    (tmp / "fault").mkdir()
    (tmp / "fault" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    marker = tmp / "failed-once"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp / "fault"), os.environ.get("PYTHONPATH")])),
        FAIL_ENV: str(marker),
    }
    logdir = tmp / "slurm_logs"
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--nolock"]
    cmd += ["--configfile", str(config), "--slurm-logdir", str(logdir), *SLURM_FLAGS]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    except subprocess.TimeoutExpired as e:
        squeue = subprocess.run(["squeue", "--states=all"], capture_output=True, text=True).stdout
        pytest.fail(f"the SLURM run took over 15 minutes; squeue:\n{squeue}\n{(e.stderr or b'')[-5000:]!r}")
    wall = time.monotonic() - start
    log = proc.stdout + proc.stderr
    (tmp / "snakemake.log").write_text(log)
    assert proc.returncode == 0, log[-8000:] + cluster.log("slurmctld").read_text()[-3000:]
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    jobs = [j for j in cluster.jobs() if j.get("JobName") == run_id]
    (tmp / "jobs.json").write_text(json.dumps(jobs, indent=1))
    return SlurmRun(tmp / "slurm-out" / RUN, log, wall, run_id, jobs, logdir, marker, cluster)


def expected_jobs(out: Path) -> set[tuple[str, str]]:
    """(rule, wildcards) of every SLURM job of the run: all but the local rules."""
    methods = yaml.safe_load((out / "config.yaml").read_text())["thoughts"]["methods"]
    jobs = {("export", ""), ("report", "")}
    for shard in SHARDS:
        jobs |= {("trees", shard), ("polish", shard)}
        jobs |= {("thoughts_method", f"{m}_{shard}") for m in methods if m != "tree"}
    return jobs


def local_jobs(log: str) -> list[tuple[str, str]]:
    """(rule, shard) of every job Snakemake ran on its own host, from its log."""
    found = re.finditer(r"^local(?:rule|checkpoint) (\w+):((?:\n    .*)*)", log, flags=re.M)
    return [(m.group(1), "".join(re.findall(r"shard=([\w-]+)", m.group(2)))) for m in found]


def test_model_stages_export_and_report_are_slurm_jobs_and_only_the_model_stages_ask_a_gpu(slurm_run):
    completed = [j for j in slurm_run.jobs if j["JobState"] == "COMPLETED"]
    seen = [re.fullmatch(r"rule_(\w+?)(?:_wildcards_(.*))?", j["Comment"]).groups("") for j in completed]
    assert sorted(seen) == sorted(expected_jobs(slurm_run.out)), seen
    assert len({j["JobId"] for j in completed}) == len(completed)
    # The seconds-long CPU stages ran where Snakemake runs, with no queue wait or job start-up.
    quick = {("problems", "")} | {(rule, s) for s in SHARDS for rule in ("thoughts_tree", "thoughts")}
    assert quick <= set(local_jobs(slurm_run.log)), local_jobs(slurm_run.log)
    for (rule, _), job in zip(seen, completed, strict=True):
        assert job["ExitCode"] == "0:0" and job["NodeList"] == slurm_run.cluster.node
        assert job["Partition"] == slurm_run.cluster.partition  # the cluster's default, found by sinfo
        if rule in MODEL_RULES:
            # The profile's request as SLURM recorded it: one GPU, 8 CPUs per GPU, 64 GB.
            assert asks_gpu(job) and job["NumCPUs"] == "8" and job["MinMemoryNode"] == "62.50G", job
            assert job["TimeLimit"] == ("08:00:00" if rule == "trees" else "04:00:00")
        else:
            assert not asks_gpu(job) and job["TimeLimit"] == "00:30:00", job
        # SLURM's own log of every job, where the profile puts it (kept here for successful jobs too).
        log = Path(job["StdOut"])
        assert slurm_run.logdir / f"rule_{rule}" in log.parents and log.is_file(), log


def test_a_model_job_ran_the_engine_inside_its_slurm_job(slurm_run):
    ran = []
    for shard in SHARDS:
        sidecar = json.loads((slurm_run.out / "trees" / f"{shard}.stats.json").read_text())
        engines = sidecar.get("engines", {})
        if engines.get("local", {}).get("calls", 0) > 0:
            (job,) = job_of(slurm_run, "trees", shard)
            # The engine loaded (device and dtype appear only then), in the process of that SLURM job:
            # the stage recorded the id of the job it ran in.
            assert engines["local"]["device"] == "cpu" and engines["local"]["dtype"]
            assert sidecar["slurm_jobs"] == [job["JobId"]], (sidecar.get("slurm_jobs"), job["JobId"])
            ran.append(shard)
    # The run started with no response cache, so every trees job paid the engine.
    assert ran == list(SHARDS), ran
    # The run's stats list every SLURM job of a stage (the retried polish job once: its failed attempt
    # wrote nothing).
    stats = json.loads((slurm_run.out / "stats.json").read_text())
    polish_jobs = sorted(j["JobId"] for s in SHARDS for j in job_of(slurm_run, "polish", s))
    assert sorted(stats["stages"]["polish"]["slurm_jobs"]) == polish_jobs, stats["stages"]["polish"]


def test_a_job_that_fails_is_retried_by_the_profile_as_a_new_slurm_job(slurm_run):
    rule, shard = FAIL_ONCE
    assert yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())["retries"] >= 1
    assert slurm_run.marker.exists(), "the injected failure never fired"
    (failed,) = job_of(slurm_run, rule, shard, "FAILED")
    (retried,) = job_of(slurm_run, rule, shard)
    assert failed["ExitCode"] != "0:0" and int(retried["JobId"]) > int(failed["JobId"])
    assert asks_gpu(failed) and asks_gpu(retried)
    # Snakemake says so, and keeps the failed job's SLURM log.
    assert (
        f"SLURM-job '{failed['JobId']}' failed" in slurm_run.log and "Trying to restart job" in slurm_run.log
    )
    assert Path(failed["StdOut"]).is_file()


def test_a_local_run_on_the_slurm_runs_caches_gives_the_same_parquet_without_engine_calls(
    slurm_run, tmp_path
):
    config = write_config(tmp_path, "local-out")
    out = tmp_path / "local-out" / RUN
    copy_caches(slurm_run.out, out)
    start = time.monotonic()
    proc = snakemake("--configfile", str(config))
    local_s = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert snapshot(out) == snapshot(slurm_run.out)
    sidecars = sorted(out.glob("*/**/shard-*.stats.json"))
    calls = {str(p.relative_to(out)): e["calls"] for p in sidecars for e in engine_stats(p).values()}
    assert calls and set(calls.values()) == {0}, calls
    report_figures(slurm_run, local_s)


STAMP = r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]\s+"


def stamp_s(text: str) -> float:
    return datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y").timestamp()


def stage_s(slurm_log: Path) -> float:
    """The rule's own time inside its SLURM job: the job step's inner Snakemake logs `localrule` (or
    `localcheckpoint`) when it starts the rule and `Finished jobid` when it is done."""
    text = slurm_log.read_text(errors="replace") if slurm_log.is_file() else ""
    begin = re.search(STAMP + r"local(?:rule|checkpoint) \w+:", text)
    end = begin and re.search(STAMP + r"Finished jobid", text[begin.end() :])
    return stamp_s(end.group(1)) - stamp_s(begin.group(1)) if end else float("nan")


def report_figures(run: SlurmRun, local_s: float) -> dict:
    """What the README quotes: jobs, and per job SLURM's queue wait, the job's time beyond its rule's
    own (job step start-up) and Snakemake's delay in noticing that it ended (status polling)."""
    finished = {
        int(m.group(2)): stamp_s(m.group(1)) for m in re.finditer(STAMP + r"Finished jobid: (\d+)", run.log)
    }
    submitted = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", run.log)
    noticed = {int(slurm): finished.get(int(smk), float("nan")) for smk, slurm in submitted}
    noticed |= {
        int(j): stamp_s(t)
        for t, j in re.findall(STAMP + r"Error in rule \w+:.*?SLURM-job '(\d+)'", run.log, re.S)
    }
    rows = []
    for job in run.jobs:
        submit, begin, end = (slurm_time(job[k]) for k in ("SubmitTime", "StartTime", "EndTime"))
        rule_s = stage_s(Path(job["StdOut"]))
        rows.append(
            {
                "job": job["Comment"].removeprefix("rule_").replace("_wildcards_", " "),
                "state": job["JobState"],
                "gpu": asks_gpu(job),
                "queued_s": begin - submit,
                "run_s": end - begin,
                "rule_s": rule_s,
                "noticed_after_end_s": noticed.get(int(job["JobId"]), float("nan")) - end,
            }
        )
    for r in rows:
        # The wait for a free GPU is the model stages taking turns (llm=1 in the local profile), not overhead.
        r["overhead_s"] = (
            (0 if r["gpu"] else r["queued_s"]) + r["run_s"] - r["rule_s"] + r["noticed_after_end_s"]
        )
    ok = [r for r in rows if r["overhead_s"] == r["overhead_s"]]  # not NaN
    figures = {
        "slurm_jobs": len(rows),
        "gpu_jobs": sum(r["gpu"] for r in rows),
        "slurm_run_wall_s": round(run.wall_s, 1),
        "local_run_on_the_caches_wall_s": round(local_s, 1),
        "per_job_overhead_s_median": median(r["overhead_s"] for r in ok),
        "per_job_overhead_s_max": max(r["overhead_s"] for r in ok),
        "queued_s_median_cpu_jobs": median(r["queued_s"] for r in rows if not r["gpu"]),
        "job_step_startup_s_median": median(r["run_s"] - r["rule_s"] for r in ok),
        "noticed_after_end_s_median": median(r["noticed_after_end_s"] for r in ok),
        "jobs": rows,
    }
    (run.out.parent.parent / "figures.json").write_text(json.dumps(figures, indent=1))
    print("\nSLURM figures:", json.dumps({k: v for k, v in figures.items() if k != "jobs"}))
    for r in rows:
        print(
            f"  {r['job']:28} {r['state']:9} gpu={r['gpu']!s:5} queued {r['queued_s']:4.0f} s  run {r['run_s']:4.0f} s"
            f"  rule {r['rule_s']:4.0f} s  noticed {r['noticed_after_end_s']:4.0f} s after its end"
        )
    return figures
