#!/usr/bin/env python3
"""Compiles one source file (syntax only) and checks the outcome.

compile_check.py --expect-fail MESSAGE|--expect-ok -- COMPILER... -I... FILE
--expect-fail passes only when the compiler rejects the file AND its diagnostics contain
MESSAGE, so a broken include path or a typo cannot pass as the expected refusal.
"""
import argparse
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument('--expect-fail', metavar='MESSAGE')
    g.add_argument('--expect-ok', action='store_true')
    ap.add_argument('command', nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ['--'] else a.command
    done = subprocess.run(cmd + ['-fsyntax-only'], capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    if a.expect_ok:
        if done.returncode != 0:
            print('expected the file to compile; the compiler said:\n' + out)
            return 1
        return 0
    if done.returncode == 0:
        print('expected a compile error, the file compiled')
        return 1
    if a.expect_fail not in out:
        print('the compile failed, but without "%s":\n%s' % (a.expect_fail, out))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
