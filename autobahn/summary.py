#!/usr/bin/env python3
"""Summarizes an Autobahn|Testsuite report and gives the verdict.

Usage: summary.py REPORT [--markdown] [--slowest N] [--title TEXT]

REPORT is a report folder (autobahn/reports/server) or its index.json. Prints the count of each
outcome overall and per case group (1, 2, ..., 13), every case that is not OK or INFORMATIONAL
(behavior or behaviorClose), and the slowest cases. When the folder holds wstest.log (server.sh
and client.sh copy it there), the cases wstest announced must all be in the report: a case that
never reached it counts as failing. Exit status: 0 when every case's behavior and behaviorClose
is OK or INFORMATIONAL (the project's goal: no NON-STRICT, FAILED or UNIMPLEMENTED) and none is
missing, 1 otherwise, 2 when the report is missing or unreadable.

Standard library only: it runs on the machine's Python 3, beside wstest's Python 2.7.
"""

import argparse
import ast
import json
import os
import sys

OUTCOMES = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
ACCEPTED = {"OK", "INFORMATIONAL"}


def case_key(case_id):
    """Sorts "9.10.2" after "9.2.1": numerically, component by component."""
    return tuple(int(part) if part.isdigit() else 0 for part in case_id.split("."))


def load(path):
    """Reads index.json: {agent: {case id: {behavior, behaviorClose, duration, ...}}}."""
    if os.path.isdir(path):
        path = os.path.join(path, "index.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def announced_cases(report):
    """The case ids wstest said it would run ("Cases = [...]" in its log), or None."""
    log = os.path.join(report if os.path.isdir(report) else os.path.dirname(report), "wstest.log")
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Cases = ["):
                    return ast.literal_eval(line[len("Cases = "):].strip())
    except (OSError, ValueError, SyntaxError):
        pass
    return None


def summarize(agent, cases, announced, markdown, slowest, title):
    """Prints one agent's summary; returns the ids of the cases that break the goal."""
    ids = sorted(cases, key=case_key)
    missing = sorted(set(announced or []) - set(cases), key=case_key)
    total = {o: 0 for o in OUTCOMES}
    groups = {}
    seconds = {}
    bad = []
    for cid in ids:
        result = cases[cid]
        behavior = result.get("behavior", "?")
        close = result.get("behaviorClose", "?")
        name = cid.split(".")[0]
        group = groups.setdefault(name, {o: 0 for o in OUTCOMES})
        seconds[name] = seconds.get(name, 0.0) + result.get("duration", 0) / 1000.0
        # An outcome this script does not know still counts (and fails the verdict).
        total[behavior] = total.get(behavior, 0) + 1
        group[behavior] = group.get(behavior, 0) + 1
        if behavior not in ACCEPTED or close not in ACCEPTED:
            bad.append((cid, behavior, close, result.get("remoteCloseCode")))
    outcomes = OUTCOMES + sorted(o for o in total if o not in OUTCOMES)
    duration = sum(r.get("duration", 0) for r in cases.values()) / 1000.0

    heading = f"{title}: " if title else ""
    if markdown:
        print(f"**{heading}agent `{agent}`, {len(ids)} cases** "
              f"({duration:.1f} s of case time in total)\n")
        print("| group | " + " | ".join(outcomes) + " | case time |")
        print("|---|" + "---:|" * (len(outcomes) + 1))
        for g in sorted(groups, key=int):
            print(f"| {g} | " + " | ".join(str(groups[g].get(o, 0)) for o in outcomes)
                  + f" | {seconds[g]:.1f} s |")
        print("| **all** | " + " | ".join(f"**{total[o]}**" for o in outcomes)
              + f" | **{duration:.1f} s** |")
        print()
    else:
        print(f"{heading}agent {agent}: {len(ids)} cases, {duration:.1f} s of case time")
        width = max(len(o) for o in outcomes)
        print("  group " + " ".join(o.rjust(width) for o in outcomes) + "  case time")
        for g in sorted(groups, key=int):
            print(f"  {g:>5} " + " ".join(str(groups[g].get(o, 0)).rjust(width) for o in outcomes)
                  + f" {seconds[g]:9.1f}s")
        print("  " + "all".rjust(5) + " " + " ".join(str(total[o]).rjust(width) for o in outcomes)
              + f" {duration:9.1f}s")

    if missing:
        print(f"{'- ' if markdown else '  '}announced by wstest but not in the report "
              f"({len(missing)}): {', '.join(missing)}")
    if bad:
        print(f"{'- ' if markdown else '  '}not OK/INFORMATIONAL ({len(bad)}):")
        for cid, behavior, close, code in bad:
            print(f"    {cid}: behavior {behavior}, behaviorClose {close}, remote close code {code}")
    else:
        print(f"{'- ' if markdown else '  '}every reported behavior and behaviorClose is OK or INFORMATIONAL")

    if slowest > 0:
        slow = sorted(ids, key=lambda c: cases[c].get("duration", 0), reverse=True)[:slowest]
        listed = ", ".join(f"{c} {cases[c].get('duration', 0) / 1000.0:.2f} s" for c in slow)
        print(f"{'- ' if markdown else '  '}slowest: {listed}")
    return [b[0] for b in bad] + missing


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="report folder or its index.json")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--slowest", type=int, default=10, help="how many slow cases to list")
    parser.add_argument("--title", default="", help="a heading for the summary")
    args = parser.parse_args()
    try:
        index = load(args.report)
    except (OSError, ValueError) as e:
        print(f"summary.py: cannot read the report {args.report}: {e}", file=sys.stderr)
        return 2
    if not index or not any(index.values()):
        print(f"summary.py: the report {args.report} holds no cases", file=sys.stderr)
        return 2
    announced = announced_cases(args.report)
    failing = []
    for agent in sorted(index):
        failing += summarize(agent, index[agent], announced, args.markdown, args.slowest,
                             args.title)
    verdict = "FAIL" if failing else "PASS"
    print(f"{'- ' if args.markdown else ''}verdict: {verdict}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
