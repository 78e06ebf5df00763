#!/usr/bin/env python3
"""Runs one hvrun/hvimage command and checks what it printed and how it exited.

  check.py --exit N [--stderr LINE | --stderr-regex RE] [--line TEXT]...
           [--bench NAME:ITERATIONS:VALUE:UNIT]... [--env NAME=VALUE]... -- COMMAND...

--stderr/--stderr-regex: stderr must be exactly that one line (without either,
  stderr must be empty). --line: stdout must hold these lines, in this order ('re:' prefix: a regex).
--bench: the command has a --bench-out=FILE; FILE must list exactly these.
--env: set for COMMAND only (not for this script's own interpreter).
hvrun's run folder (named on stdout) must hold its files and a result.txt that agrees
with the verdict; it is removed when every check passes.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

RUN_FOLDER = re.compile(r"^hvrun: run folder (.+)$", re.M)
RUN_FILES = ("serial.log", "emulator.log", "command.txt", "result.txt")


def ordered_lines(stdout, wanted):
    """Each wanted line must appear after the previous one; a line starting with
    're:' is a regular expression the whole line must match."""
    lines = stdout.splitlines()
    at = 0
    for line in wanted:
        if line.startswith("re:"):
            pattern = re.compile(line[3:])
            match = lambda text: pattern.fullmatch(text) is not None
        else:
            match = lambda text: text == line
        found = next((i for i in range(at, len(lines)) if match(lines[i])), None)
        if found is None:
            return f"stdout lacks line {line!r} (in order)"
        at = found + 1
    return None


def bench_entries(command):
    out = [a.split("=", 1)[1] for a in command if a.startswith("--bench-out=")]
    with open(out[0]) as f:
        doc = json.load(f)
    assert "context" in doc
    entries = []
    for b in doc["benchmarks"]:
        assert b["real_time"] == b["cpu_time"] == b[b["label"]], b
        assert b["time_unit"] == "ns" and b["run_type"] == "iteration", b
        entries.append(f'{b["name"]}:{b["iterations"]}:{b["real_time"]:g}:{b["label"]}')
    return entries


def run_folder_problem(stdout, stderr, code):
    match = RUN_FOLDER.search(stdout)
    if not match:
        return None, None
    folder = match.group(1)
    missing = [f for f in RUN_FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        return folder, f"run folder {folder} lacks {missing}"
    with open(os.path.join(folder, "result.txt")) as f:
        result = f.read().splitlines()
    verdict = "PASS" if code == 0 else stderr.strip().removeprefix("hvrun: ")
    if result != [verdict, f"exit code {code}"]:
        return folder, f"result.txt says {result}, expected {[verdict, code]}"
    return folder, None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--exit", type=int, required=True)
    parser.add_argument("--stderr")
    parser.add_argument("--stderr-regex")
    parser.add_argument("--line", action="append", default=[])
    parser.add_argument("--bench", action="append")
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    env = dict(os.environ)
    env.update(item.split("=", 1) for item in args.env)
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, errors="replace", env=env)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)

    problems = []
    if done.returncode != args.exit:
        problems.append(f"exit code {done.returncode}, expected {args.exit}")
    err_lines = done.stderr.splitlines()
    if args.stderr is not None and err_lines != [args.stderr]:
        problems.append(f"stderr is {err_lines}, expected [{args.stderr!r}]")
    elif args.stderr_regex is not None and not (
            len(err_lines) == 1 and re.fullmatch(args.stderr_regex, err_lines[0])):
        problems.append(f"stderr is {err_lines}, expected one line ~ {args.stderr_regex!r}")
    elif args.stderr is None and args.stderr_regex is None and err_lines:
        problems.append(f"stderr should be empty, is {err_lines}")
    if (problem := ordered_lines(done.stdout, args.line)):
        problems.append(problem)
    if args.bench is not None and (got := bench_entries(command)) != args.bench:
        problems.append(f"bench JSON holds {got}, expected {args.bench}")
    folder, problem = run_folder_problem(done.stdout, done.stderr, done.returncode)
    if problem:
        problems.append(problem)

    for problem in problems:
        print(f"check.py: {problem}", file=sys.stderr)
    if not problems and folder:
        shutil.rmtree(folder)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
