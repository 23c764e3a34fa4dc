#!/usr/bin/env python3
"""Runs every ctest test with a given label (default `cuda`) of a build, whatever file or
folder defines it, as the GPU check kit's test stage (scripts/device/run.sh).

ctest itself would start one process per GoogleTest case and pay CUDA + cuDNN start-up each
time, so tests that gtest_discover_tests registered are grouped by executable and each
executable runs ONCE with a --gtest_filter naming all its cases of the label. Any other test
with the label (a plain add_test, e.g. a launcher script) runs with its own command line.

Every group gets a time limit from the stage deadline; its output goes to
LOGS/<group>.log and to stdout as it comes (the kit appends stdout to the returned kit.log),
GoogleTest's XML report to LOGS/<group>.xml, and a per-test table to LOGS/<label>_tests.json.

Outcome per test: passed, skipped (GTEST_SKIP: without a device every cuda test must say
so), failed, not run (the process died or hit its limit before the test ended: the test
that was running is named), not built. Exit status: 0 all passed; 3 nothing failed but some
were skipped (no device answered?); 1 anything failed, did not run or was not built; 2 the
test list could not be read.

Usage: cuda_tests.py --build BUILD_DIR --logs LOG_DIR --deadline UNIX_TIME [--label cuda]
Needs only the Python standard library (it runs on the GPU machine's python3).
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

RESERVE_S = 5  # left for the caller after the last group


def load_tests(build, label):
    out = subprocess.run(["ctest", "--test-dir", build, "-L", label, "--show-only=json-v1"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("ctest --show-only failed: " + out.stderr.strip())
    tests = []
    for t in json.loads(out.stdout).get("tests", []):
        props = {p["name"]: p["value"] for p in t.get("properties", [])}
        tests.append({"name": t["name"], "command": t.get("command", []), "props": props})
    return tests


def group_tests(tests):
    """(groups, not_built): a group is {key, command, cwd, env, names, gtest}."""
    groups, by_key, not_built = [], {}, []
    for t in tests:
        cmd = t["command"]
        if not cmd or t["name"].endswith("_NOT_BUILT"):
            not_built.append(t["name"])
            continue
        cwd = t["props"].get("WORKING_DIRECTORY")
        env = tuple(t["props"].get("ENVIRONMENT", []))
        filt = [a for a in cmd[1:] if a.startswith("--gtest_filter=")]
        if filt:
            rest = tuple(a for a in cmd[1:] if not a.startswith("--gtest_filter="))
            key = (cmd[0], rest, cwd, env)
            if key not in by_key:
                by_key[key] = {"key": os.path.basename(cmd[0]), "command": [cmd[0], *rest],
                               "cwd": cwd, "env": env, "names": [], "gtest": True}
                groups.append(by_key[key])
            by_key[key]["names"].append(t["name"])
        else:
            groups.append({"key": re.sub(r"[^A-Za-z0-9_.-]", "_", t["name"]), "command": cmd,
                           "cwd": cwd, "env": env, "names": [t["name"]], "gtest": False,
                           "props": t["props"]})
    # Keys must be unique file names.
    seen = {}
    for g in groups:
        n = seen.get(g["key"], 0)
        seen[g["key"]] = n + 1
        if n:
            g["key"] += "_%d" % n

    # The op-by-op parity first (the most informative), the slow whole-step tests last.
    def order(g):
        k = g["key"]
        return (0 if "parity" in k else 2 if "train" in k else 1, k)

    groups.sort(key=order)
    return groups, not_built


def run_group(g, logs, limit_s):
    """Runs one group; returns (exit code or None when killed at its limit, output text)."""
    cmd = list(g["command"])
    if g["gtest"]:
        cmd.append("--gtest_filter=" + ":".join(g["names"]))
        cmd.append("--gtest_output=xml:" + os.path.join(logs, g["key"] + ".xml"))
    env = dict(os.environ)
    for kv in g["env"]:
        k, _, v = kv.partition("=")
        env[k] = v
    log_path = os.path.join(logs, g["key"] + ".log")
    lines = []
    with open(log_path, "w") as log:
        # Its own process group (not session: the device tool ends leftover processes of
        # the command's session), so that a time limit ends the test and all it started.
        p = subprocess.Popen(cmd, cwd=g["cwd"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace",
                             preexec_fn=os.setpgrp)
        CURRENT[0] = p

        def pump():
            for line in p.stdout:
                lines.append(line)
                log.write(line)
                log.flush()
                sys.stdout.write(line)
                sys.stdout.flush()

        th = threading.Thread(target=pump, daemon=True)
        th.start()
        try:
            rc = p.wait(timeout=max(1, limit_s))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            rc = None
        th.join(timeout=5)
        CURRENT[0] = None
    return rc, "".join(lines)


CURRENT = [None]  # the test process running now


def on_term(signum, frame):
    """The kit's outer time limit: end the running test (its group) with us."""
    p = CURRENT[0]
    if p is not None and p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
    sys.exit(128 + signum)


GTEST_END = re.compile(r"^\[\s+(OK|SKIPPED|FAILED)\s+\] (\S+?)(?:,| \(|$)")
GTEST_RUN = re.compile(r"^\[ RUN\s+\] (\S+)")


def gtest_outcomes(names, text, rc):
    status, running, reason, last_skip_msg = {}, None, {}, None
    prev = ""
    for line in text.splitlines():
        m = GTEST_RUN.match(line)
        if m:
            running = m.group(1)
            continue
        if prev.rstrip().endswith(": Skipped"):
            last_skip_msg = line.strip()
        m = GTEST_END.match(line)
        if m and m.group(2) in names and m.group(2) not in status:
            kind = m.group(1)
            status[m.group(2)] = {"OK": "passed", "SKIPPED": "skipped", "FAILED": "failed"}[kind]
            if kind == "SKIPPED" and last_skip_msg:
                reason[m.group(2)] = last_skip_msg
            if m.group(2) == running:
                running = None
            last_skip_msg = None
        prev = line
    for n in names:
        if n not in status:
            status[n] = "not run"
            if n == running:
                reason[n] = ("process killed at its time limit" if rc is None
                             else "process ended (exit %s) while this test ran" % rc)
    return status, reason


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--logs", required=True)
    ap.add_argument("--deadline", type=float, required=True, help="unix time by which to stop")
    ap.add_argument("--label", default="cuda")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    os.makedirs(a.logs, exist_ok=True)
    try:
        groups, not_built = group_tests(load_tests(a.build, a.label))
    except Exception as e:  # noqa: BLE001 - report and stop
        print("cuda_tests: cannot list the tests: %s" % e)
        return 2
    total = sum(len(g["names"]) for g in groups) + len(not_built)
    print("cuda_tests: %d tests labelled %s in %d processes; %d not built" %
          (total, a.label, len(groups), len(not_built)), flush=True)
    if total == 0:
        print("cuda_tests: no test labelled %s: nothing was built?" % a.label)
        return 1
    results, reasons = {}, {}
    for n in not_built:
        results[n] = "not built"
    for g in groups:
        left = a.deadline - time.time() - RESERVE_S
        if left < 5:
            for n in g["names"]:
                results[n] = "not run"
                reasons[n] = "no time left in the test stage"
            print("cuda_tests: %s not started: no time left" % g["key"], flush=True)
            continue
        print("cuda_tests: == %s (%d tests, limit %d s)" % (g["key"], len(g["names"]), left),
              flush=True)
        t0 = time.time()
        rc, text = run_group(g, a.logs, left)
        if g["gtest"]:
            st, why = gtest_outcomes(g["names"], text, rc)
        else:
            props = g.get("props", {})
            skip_rc = props.get("SKIP_RETURN_CODE")
            skip_re = props.get("SKIP_REGULAR_EXPRESSION", [])
            n = g["names"][0]
            if rc is None:
                st, why = {n: "not run"}, {n: "process killed at its time limit"}
            elif (skip_rc is not None and rc == int(skip_rc)) or any(
                    re.search(r, text) for r in skip_re):
                st, why = {n: "skipped"}, {}
            else:
                st, why = {n: "passed" if rc == 0 else "failed"}, {}
        results.update(st)
        reasons.update(why)
        print("cuda_tests: %s: exit %s after %.0f s" %
              (g["key"], "killed" if rc is None else rc, time.time() - t0), flush=True)

    counts = {}
    for s in results.values():
        counts[s] = counts.get(s, 0) + 1
    with open(os.path.join(a.logs, a.label + "_tests.json"), "w") as f:
        json.dump({"counts": counts, "results": results, "reasons": reasons}, f, indent=1)
    print("cuda_tests: summary: " + ", ".join("%d %s" % (v, k) for k, v in sorted(counts.items())))
    for n in sorted(results):
        if results[n] != "passed":
            extra = reasons.get(n)
            print("cuda_tests:   %-9s %s%s" % (results[n], n, " (" + extra + ")" if extra else ""))
    skip_why = {}
    for n, s in results.items():
        if s == "skipped":
            skip_why[reasons.get(n, "?")] = skip_why.get(reasons.get(n, "?"), 0) + 1
    for why, k in sorted(skip_why.items()):
        print("cuda_tests: skipped %d x: %s" % (k, why))
    bad = sum(v for k, v in counts.items() if k in ("failed", "not run", "not built"))
    if bad:
        return 1
    if counts.get("skipped"):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
