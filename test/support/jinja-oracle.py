"""Renders template cases with the real Python Jinja2, configured as Salt configures it.

Reads a JSON list of cases ({"template", "files", "vars"}) on stdin and writes a JSON list of
{"out": text} or {"error": message} on stdout. Salt's settings (salt/utils/templates.py):
SandboxedEnvironment, StrictUndefined, the do and loopcontrols extensions, no trim_blocks or
lstrip_blocks, the context also installed as template globals (so imports without context still
see it), and the source's trailing newline appended again after rendering. Salt's overrides of
builtin filters that the corpus uses (unique, min, max) are reproduced below, and so are Salt's
own address, date and query filters (salt/utils/network.py, dateutils.py, data.py as documented),
written on Python's ipaddress, datetime and jmespath, so those libraries are the oracle for
address rules, strftime and JMESPath. A case using json_query needs python3-jmespath.
"""
import datetime
import ipaddress
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


_IP_OPTIONS = [
    ("global", lambda ip: not ip.is_private),
    ("link-local", lambda ip: ip.is_link_local),
    ("linklocal", lambda ip: ip.is_link_local),
    ("ll", lambda ip: ip.is_link_local),
    ("link_local", lambda ip: ip.is_link_local),
    ("loopback", lambda ip: ip.is_loopback),
    ("lo", lambda ip: ip.is_loopback),
    ("multicast", lambda ip: ip.is_multicast),
    ("private", lambda ip: ip.is_private),
    ("public", lambda ip: not ip.is_private),
    ("reserved", lambda ip: ip.is_reserved),
    ("site-local", lambda ip: ip.version == 6 and ip.is_site_local),
    ("sl", lambda ip: ip.version == 6 and ip.is_site_local),
    ("site_local", lambda ip: ip.version == 6 and ip.is_site_local),
    ("unspecified", lambda ip: ip.is_unspecified),
]


def _is_ipv(value, version, options=None):
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        try:
            ip = ipaddress.ip_interface(value)
        except ValueError:
            return None
    if ip.version != version:
        return None
    if options:
        wanted = [o.strip() for o in options.split(",")]
        for name, test in _IP_OPTIONS:
            if name in wanted and not test(ip):
                return None
    return str(ip)


def _ipv(value, version, options=None):
    if isinstance(value, str):
        return _is_ipv(value, version, options)
    if isinstance(value, (list, tuple)):
        return [_is_ipv(x, version, options) for x in value if _is_ipv(x, version, options) is not None]
    return None


def _ipaddr(value, options=None):
    v4, v6 = _ipv(value, 4, options), _ipv(value, 6, options)
    if v4 is None or v6 is None:
        return v4 or v6
    return v4 + v6


def _per_network(one):
    def fil(value, options=None, version=None):
        out = _ipv(value, version, options) if version in (4, 6) else _ipaddr(value, options)
        if not out:
            return None
        if not isinstance(out, list):
            out = [out]
        return [one(x) for x in out] if isinstance(value, (list, tuple)) else one(out[0])
    return fil


def _strftime(value=None, format="%Y-%m-%d"):
    if value is None:
        when = datetime.datetime.now()
    else:
        when = datetime.datetime.fromtimestamp(float(value))
    return when.strftime(format)


def _json_query(data, expr):
    import jmespath  # python3-jmespath, the library Salt's filter calls

    return jmespath.search(expr, data)


def render(case):
    env = jinja2.sandbox.SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"],
        loader=jinja2.DictLoader(case.get("files") or {}),
    )
    env.filters["unique"] = salt_unique
    env.filters["min"] = min
    env.filters["max"] = max
    env.filters["ipaddr"] = _ipaddr
    env.filters["ipv4"] = lambda v, options=None: _ipv(v, 4, options)
    env.filters["ipv6"] = lambda v, options=None: _ipv(v, 6, options)
    env.filters["ip_host"] = _per_network(lambda a: str(ipaddress.ip_interface(a)))
    env.filters["network_hosts"] = _per_network(
        lambda a: [str(h) for h in ipaddress.ip_network(a, strict=False).hosts()]
    )
    env.filters["network_size"] = _per_network(lambda a: ipaddress.ip_network(a, strict=False).num_addresses)
    env.filters["strftime"] = _strftime
    env.filters["date_format"] = _strftime
    env.filters["json_query"] = _json_query
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
