"""bench/counts.py: what a flip costs in counts. The API server's request counter is read from its
/metrics text (what `kubectl get --raw /metrics` prints)."""

from __future__ import annotations

from bench import counts

METRICS = "\n".join([
    "# HELP apiserver_request_total Counter of apiserver requests",
    'apiserver_request_total{code="200",component="apiserver",resource="",subresource="api",verb="GET"} 3',
    'apiserver_request_total{code="200",component="apiserver",resource="",subresource="apis",verb="GET"} 3',
    'apiserver_request_total{code="200",component="",resource="",subresource="openapi/v3/",verb="GET"} 2',
    'apiserver_request_total{code="200",group="",resource="services",subresource="",verb="PATCH",version="v1"} 2',
    'apiserver_request_total{code="409",group="",resource="services",subresource="",verb="PATCH",version="v1"} 1',
    'apiserver_request_duration_seconds_count{verb="GET",resource="services"} 40',
])


def test_the_api_servers_requests_are_counted_by_verb_and_what_they_read():
    assert counts.request_totals(METRICS) == {("GET", "api"): 3, ("GET", "apis"): 3, ("GET", "openapi/v3/"): 2,
                                              ("PATCH", "services"): 3}


def test_a_flips_requests_are_what_grew_meanwhile_with_discovery_and_openapi_apart(monkeypatch):
    after = METRICS.replace('subresource="api",verb="GET"} 3', 'subresource="api",verb="GET"} 31').replace(
        'subresource="openapi/v3/",verb="GET"} 2', 'subresource="openapi/v3/",verb="GET"} 10')
    texts = iter([METRICS, after + '\napiserver_request_total{resource="secrets",verb="POST"} 1'])
    monkeypatch.setattr(counts, "_request_totals", lambda: counts.request_totals(next(texts)))
    ran = []
    assert counts.api_requests(lambda: ran.append(True)) == {"all": 37, "discovery": 28, "openapi": 8}
    assert ran == [True]


def test_execs_are_counted_also_when_strace_splits_them_across_lines():
    """Processes that exec at the same moment (the reads after an update) are written by strace -f
    in two parts: the call, "<unfinished ...>", and later its end. A failed exec (PATH search) is not counted."""
    trace = "\n".join([
        '101 execve("/usr/bin/python3", ["python3", "-m", "bluegreen"], 0x7ff /* 30 vars */) = 0',
        '102 execve("/opt/a/pulumi", ["pulumi", "version"], 0x7ff /* 30 vars */) = -1 ENOENT (No such file)',
        '102 execve("/opt/b/pulumi", ["pulumi", "stack", "export"], 0x7ff /* 30 vars */ <unfinished ...>',
        '103 execve("/opt/b/pulumi", ["pulumi", "stack", "history"], 0x7ff /* 30 vars */ <unfinished ...>',
        '102 <... execve resumed>)               = 0',
        '104 execve("/opt/b/pulumi", ["pulumi", "config"], 0x7ff /* 30 vars */ <unfinished ...>',
        '103 <... execve resumed>)               = 0',
        '104 <... execve resumed>)               = -1 EACCES (Permission denied)',
        '105 +++ exited with 0 +++',
    ])
    assert counts.executables(trace) == ["/usr/bin/python3", "/opt/b/pulumi", "/opt/b/pulumi"]
