#!/usr/bin/python3
"""pulp_optimizer.py - the original LegoDNN scaling ILP (legodnn/optimal_runtime.py),
solved with PuLP + CBC, as the baseline of bench/bench_optimizer.

Usage: pulp_optimizer.py IN.json OUT.txt
IN.json: {"problems": [{"acc": [[...]], "lat": [[...]], "mem": [[...]],
                        "L0": float, "M0": int, "T": float, "M": int}, ...]}
(acc/lat/mem are per block, per option; option 0 is the original block.)
OUT.txt: "median_s X" then one line per problem: "STATUS OBJECTIVE" (STATUS 1 =
optimal, as pulp.LpStatus; the objective is nan otherwise).

Each decision is timed as the original spends it: build the LpProblem with
binaries x_{b,s} named "0".."V-1", minimise sum x*dAcc subject to one option per
block, sum x*dT >= T0 - T_max and sum x*dMem >= M_orig - M_max (dT, dMem = the
savings against option 0), and solve with PULP_CBC_CMD(msg=False, gapAbs=0).
Debian's python3-pulp ships without its bundled CBC binary, so where that is
missing the same command runs through COIN_CMD on Debian's /usr/bin/cbc (the
original README's advice for ARM devices).
"""
import json
import statistics
import sys
import time

import pulp


def solver():
    s = pulp.PULP_CBC_CMD(msg=False, gapAbs=0)
    if s.available():
        return s
    return pulp.COIN_CMD(path="/usr/bin/cbc", msg=False, gapAbs=0)


def solve(p, cmd):
    acc, lat, mem = p["acc"], p["lat"], p["mem"]
    prob = pulp.LpProblem("legodnn_scaling", pulp.LpMinimize)
    xs, v = [], 0
    for b in range(len(acc)):
        row = []
        for _ in range(len(acc[b])):
            row.append(pulp.LpVariable(str(v), cat=pulp.LpBinary))
            v += 1
        xs.append(row)
    prob += pulp.lpSum(xs[b][s] * acc[b][s] for b in range(len(acc)) for s in range(len(acc[b])))
    for b in range(len(acc)):
        prob += pulp.lpSum(xs[b]) == 1
    t0 = p["L0"] + sum(lat[b][0] for b in range(len(lat)))
    m0 = p["M0"] + sum(mem[b][0] for b in range(len(mem)))
    prob += pulp.lpSum(xs[b][s] * (lat[b][0] - lat[b][s])
                       for b in range(len(lat)) for s in range(len(lat[b]))) >= t0 - p["T"]
    prob += pulp.lpSum(xs[b][s] * (mem[b][0] - mem[b][s])
                       for b in range(len(mem)) for s in range(len(mem[b]))) >= m0 - p["M"]
    status = prob.solve(cmd)
    obj = pulp.value(prob.objective) if status == 1 else float("nan")
    return status, obj


def main():
    with open(sys.argv[1]) as f:
        problems = json.load(f)["problems"]
    cmd = solver()
    times, results = [], []
    for p in problems:
        t = time.perf_counter()
        results.append(solve(p, cmd))
        times.append(time.perf_counter() - t)
    with open(sys.argv[2], "w") as f:
        f.write("median_s %.9g\n" % statistics.median(times))
        for status, obj in results:
            f.write("%d %.17g\n" % (status, obj if obj is not None else float("nan")))


if __name__ == "__main__":
    main()
