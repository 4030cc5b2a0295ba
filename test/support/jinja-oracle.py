"""Renders template cases with the real Python Jinja2, configured as Salt configures it.

Reads a JSON list of cases ({"template", "files", "vars"}) on stdin and writes a JSON list of
{"out": text} or {"error": message} on stdout. Salt's settings (salt/utils/templates.py):
SandboxedEnvironment, StrictUndefined, the do and loopcontrols extensions, no trim_blocks or
lstrip_blocks, the context also installed as template globals (so imports without context still
see it), and the source's trailing newline appended again after rendering. Salt's overrides of
builtin filters that the corpus uses (unique, min, max) are reproduced below.
"""
import json
import sys

import jinja2
import jinja2.sandbox


def salt_unique(values):
    out = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


def render(case):
    env = jinja2.sandbox.SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"],
        loader=jinja2.DictLoader(case.get("files") or {}),
    )
    env.filters["unique"] = salt_unique
    env.filters["min"] = min
    env.filters["max"] = max
    text = case["template"]
    newline = "\n" if text.endswith("\n") else ""  # os.linesep on Linux
    context = case.get("vars") or {}
    template = env.from_string(text)
    template.globals.update(context)
    return template.render(**context) + newline


def main():
    cases = json.load(sys.stdin)
    results = []
    for case in cases:
        try:
            results.append({"out": render(case)})
        except Exception as exc:  # every failure is an expected-error result
            results.append({"error": "%s: %s" % (type(exc).__name__, exc)})
    json.dump(results, sys.stdout)


main()
