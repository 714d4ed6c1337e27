"""Tests for scripts/langhost/pulumi-language-python, the Python stand-in for Pulumi's Go
language host. They need no Pulumi CLI: the pure parts (flags, the exec shim's command line and
environment, plugin discovery, version translation) are checked directly, and one test runs the
host as the engine would, against a fake engine and a fake exec shim that records what it got."""

import importlib.machinery
import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
from concurrent import futures

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import engine_pb2_grpc, language_pb2, language_pb2_grpc

HOST = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "langhost" / "pulumi-language-python"


def _load_host():
    # The host is an executable without a .py suffix, so load it by path.
    loader = importlib.machinery.SourceFileLoader("langhost", str(HOST))
    spec = importlib.util.spec_from_loader("langhost", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["langhost"] = module  # dataclasses look their module up while it loads
    loader.exec_module(module)
    return module


lh = _load_host()


# -- the engine's command line -------------------------------------------------------------------


def test_parses_the_engines_plugin_command_line():
    # plugin.go buildPluginArguments: [--logtostderr] [-v=N] [--tracing X] then the engine address.
    args = lh.parse_host_args(["--logtostderr", "-v=9", "--tracing", "http://zipkin", "127.0.0.1:4242"])
    assert args.logtostderr and args.verbose == 9
    assert args.tracing == "http://zipkin"
    assert args.engine_address == "127.0.0.1:4242"


def test_parses_go_flag_spellings_and_tolerates_unknown_flags():
    args = lh.parse_host_args(["-use-executor=/x/exec", "-virtualenv", "venv", "--newflag", "addr"])
    assert args.use_executor == "/x/exec"
    assert args.ignored == {"newflag": "true", "virtualenv": "venv"}
    assert args.engine_address == "addr"
    assert lh.parse_host_args([]).engine_address == ""
    with pytest.raises(ValueError):
        lh.parse_host_args(["--tracing"])


# -- Run: what the exec shim gets ----------------------------------------------------------------


def _run_request(**overrides):
    fields = dict(
        monitor_address="127.0.0.1:1", project="proj", stack="dev", pwd="/p", dryRun=True,
        parallel=16, organization="org", args=["a1", "a2"],
        info=language_pb2.ProgramInfo(root_directory="/root", program_directory="/p", entry_point="."),
    )
    fields.update(overrides)
    return language_pb2.RunRequest(**fields)


def test_exec_arguments_match_the_real_host():
    assert lh.construct_arguments(_run_request(), "127.0.0.1:2", "http://t") == [
        "--monitor", "127.0.0.1:1", "--engine", "127.0.0.1:2", "--project", "proj",
        "--root_directory", "/root", "--stack", "dev", "--pwd", "/p", "--dry_run", "true",
        "--parallel", "16", "--tracing", "http://t", "--organization", "org", ".", "a1", "a2",
    ]


def test_exec_arguments_leave_out_empty_values_but_not_booleans():
    req = _run_request(organization="", pwd="", dryRun=False, args=[],
                       info=language_pb2.ProgramInfo(entry_point="main.py"))
    assert lh.construct_arguments(req, "e", "") == [
        "--monitor", "127.0.0.1:1", "--engine", "e", "--project", "proj", "--stack", "dev",
        "--dry_run", "false", "--parallel", "16", "main.py",
    ]


def test_config_travels_in_environment_variables():
    req = _run_request(config={"proj:x": "1", "proj:a": '{"b":1}'}, configSecretKeys=["proj:s"])
    env = lh.config_environment(req)
    assert json.loads(env["PULUMI_CONFIG"]) == {"proj:x": "1", "proj:a": '{"b":1}'}
    assert json.loads(env["PULUMI_CONFIG_SECRET_KEYS"]) == ["proj:s"]
    # No config: no PULUMI_CONFIG at all, but the secret keys list is always there.
    assert lh.config_environment(_run_request()) == {"PULUMI_CONFIG_SECRET_KEYS": "[]"}


@pytest.mark.parametrize("code, error, bail", [
    (0, "", False),
    (32, "", True),  # the shim already showed the user a good message
    (3, "program exited with non-zero exit code: 3", False),
    (-9, "program exited with non-zero exit code: -1", False),  # killed by a signal, as Go says
])
def test_exit_codes_become_run_responses(code, error, bail):
    response = lh.run_response_for_exit(code)
    assert (response.error, response.bail) == (error, bail)


# -- options and toolchain -----------------------------------------------------------------------


def test_runtime_options_are_checked_like_the_real_host():
    opts = lh.parse_options("/r", "/r/p", {"virtualenv": "venv", "toolchain": "pip", "typechecker": "mypy"})
    assert (opts.virtualenv, opts.toolchain, opts.typechecker) == ("venv", "pip", "mypy")
    for bad in ({"virtualenv": 1}, {"toolchain": "conda"}, {"typechecker": "pytype"}):
        with pytest.raises(lh.HostError):
            lh.parse_options("/r", "/r", bad)


def test_virtualenv_is_relative_to_the_project_root(tmp_path):
    tc = lh.resolve_toolchain(lh.PythonOptions(root=str(tmp_path), program_dir=str(tmp_path / "src"),
                                               virtualenv="venv"))
    assert tc.virtualenv_path == str(tmp_path / "venv")
    with pytest.raises(lh.HostError, match="doesn't exist"):
        tc.validate_venv()
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").write_text("")
    tc.validate_venv()
    argv, env = tc.command(["-V"])
    assert argv == [str(tmp_path / "venv" / "bin" / "python"), "-V"]
    assert env["VIRTUAL_ENV"] == str(tmp_path / "venv")
    assert env["PATH"].split(os.pathsep)[0] == str(tmp_path / "venv" / "bin")


def test_a_uv_or_poetry_project_is_refused_clearly(tmp_path):
    (tmp_path / "uv.lock").write_text("")
    (tmp_path / "prog").mkdir()
    with pytest.raises(lh.HostError, match="uv toolchain is not supported"):
        lh.resolve_toolchain(lh.PythonOptions(root=str(tmp_path), program_dir=str(tmp_path / "prog")))
    # An explicit pip choice wins over the lock file, as in the real host.
    lh.resolve_toolchain(lh.PythonOptions(root=str(tmp_path), program_dir=str(tmp_path), toolchain="pip"))


def test_activate_virtualenv_drops_pythonhome():
    env = lh.activate_virtualenv({"PATH": "/usr/bin", "PYTHONHOME": "/x", "VIRTUAL_ENV": "/old"}, "/v")
    assert env == {"PATH": "/v/bin" + os.pathsep + "/usr/bin", "VIRTUAL_ENV": "/v"}


# -- which resource plugins the installed packages need ------------------------------------------


@pytest.mark.parametrize("package, plugin", [
    ("1.0", "1.0.0"),
    ("4.25.0", "4.25.0"),
    ("1.2.3a4", "1.2.3-alpha.4"),
    ("1.2.3b4", "1.2.3-beta.4"),
    ("1.2.3rc4", "1.2.3-rc.4"),
    ("1.2.3.post4", "1.2.3+post4"),
    ("1.2.3.dev5", "1.2.3+dev5"),
    ("1.2.3.post4.dev5", "1.2.3+post4dev5"),
    ("3.31.0a1605189729", "3.31.0-alpha.1605189729"),
    ("1!2.3", None),  # epochs are not supported
    ("1.2.3+local", None),
    ("", None),
])
def test_pep440_versions_translate_to_plugin_versions(package, plugin):
    assert lh.plugin_version_from_package_version(package) == plugin


def _install(site, name, version, plugin_json=None):
    module = site / name.replace("-", "_")
    module.mkdir(parents=True)
    if plugin_json is not None:
        (module / "pulumi-plugin.json").write_text(json.dumps(plugin_json))
    return {"name": name, "version": version, "location": str(site)}


def test_required_packages_come_from_pulumi_plugin_json_or_the_package_name(tmp_path):
    dists = [
        _install(tmp_path, "pulumi-kubernetes", "4.25.0",
                 {"resource": True, "name": "kubernetes", "version": "4.25.0"}),
        _install(tmp_path, "pulumi-random", "4.16.0"),  # no json: name and version derived
        _install(tmp_path, "pulumi-policy", "1.0.0"),  # known to have no plugin
        _install(tmp_path, "pulumi-nothing", "1.0.0", {"resource": False}),
        _install(tmp_path, "requests", "2.0.0"),  # not a Pulumi package
        _install(tmp_path, "pulumi-pre", "1.0.0a1600000000"),  # still derivable
        _install(tmp_path, "pulumi-local", "1.0.0+abc"),  # not derivable: skipped
        _install(tmp_path, "acme-sdk", "0.1.0", {  # third party, parameterized
            "resource": True, "name": "terraform-provider", "version": "0.8.0",
            "server": "github://api.github.com/acme",
            "parameterization": {"name": "acme", "version": "0.1.0", "value": "aGk="}}),
    ]
    got = {p.name: p for p in lh.required_packages(dists)}
    assert sorted(got) == ["kubernetes", "pre", "random", "terraform-provider"]
    assert (got["kubernetes"].kind, got["kubernetes"].version) == ("resource", "v4.25.0")
    assert got["random"].version == "v4.16.0"
    assert got["pre"].version == "v1.0.0-alpha.1600000000"
    acme = got["terraform-provider"]
    assert (acme.version, acme.server) == ("v0.8.0", "github://api.github.com/acme")
    assert (acme.parameterization.name, acme.parameterization.value) == ("acme", b"hi")


def test_a_broken_pulumi_plugin_json_is_an_error(tmp_path):
    dist = _install(tmp_path, "pulumi-broken", "1.0.0")
    (tmp_path / "pulumi_broken" / "pulumi-plugin.json").write_text("{not json")
    with pytest.raises(lh.HostError, match="pulumi-plugin.json"):
        lh.required_packages([dist])


def test_installed_distributions_are_read_from_the_users_interpreter(tmp_path):
    # This test process's own interpreter stands in for the user's virtualenv.
    tc = lh.PipToolchain(lh.PythonOptions(root=str(tmp_path), program_dir=str(tmp_path)))
    tc.virtualenv_path = sys.prefix  # a venv or not, `python` lives in sys.prefix/bin
    if not lh.is_virtualenv(sys.prefix):
        pytest.skip("tests are not running in a virtualenv")
    names = {d["name"]: d for d in tc.installed_distributions()}
    assert "pulumi" in names and "grpcio" in names
    assert os.path.isdir(os.path.join(names["pulumi"]["location"], "pulumi"))


@pytest.mark.parametrize("text, version", [
    ("Python 3.11.7\n", "3.11.7"), ("Python 3.13.0rc2", "3.13.0-rc.2"), ("3.12", "3.12.0"),
])
def test_python_versions_for_about(text, version):
    assert lh.parse_python_version(text) == version


# -- the host as the engine runs it --------------------------------------------------------------


class _FakeEngine(engine_pb2_grpc.EngineServicer):
    def __init__(self):
        self.logs = []

    def Log(self, request, context):
        self.logs.append(request.message)
        return empty_pb2.Empty()


FAKE_EXEC = textwrap.dedent("""
    import json, os, sys
    with open(os.environ["RECORD"], "w") as f:
        json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(),
                   "env": {k: os.environ.get(k) for k in
                           ("PULUMI_CONFIG", "PULUMI_CONFIG_SECRET_KEYS", "VIRTUAL_ENV")}}, f)
    print("program output")
    sys.exit(int(open(os.environ["EXIT_CODE_FILE"]).read()))
""")


@pytest.fixture
def running_host(tmp_path):
    engine = _FakeEngine()
    engine_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    engine_pb2_grpc.add_EngineServicer_to_server(engine, engine_server)
    engine_port = engine_server.add_insecure_port("127.0.0.1:0")
    engine_server.start()

    fake_exec = tmp_path / "fake-exec"
    fake_exec.write_text(FAKE_EXEC)
    project = tmp_path / "project"
    venv_bin = project / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    env = dict(os.environ, RECORD=str(tmp_path / "record.json"),
               EXIT_CODE_FILE=str(tmp_path / "exit-code"))
    host = subprocess.Popen(
        [sys.executable, str(HOST), "--use-executor", str(fake_exec), "--tracing", "",
         f"127.0.0.1:{engine_port}"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        port = int(host.stdout.readline())  # the first line of stdout is the port, nothing else
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield language_pb2_grpc.LanguageRuntimeStub(channel), host, project, tmp_path
        channel.close()
    finally:
        if host.poll() is None:
            host.kill()
        host.wait()
        engine_server.stop(None)


def test_host_runs_the_program_as_the_engine_asks(running_host):
    stub, host, project, tmp = running_host
    assert stub.GetPluginInfo(empty_pb2.Empty()).version == lh.importlib.metadata.version("pulumi")

    options = struct_pb2.Struct()
    options.update({"virtualenv": "venv"})
    info = language_pb2.ProgramInfo(root_directory=str(project), program_directory=str(project),
                                    entry_point=".", options=options)
    request = _run_request(info=info, pwd=str(project), config={"proj:x": "1"})
    for code, expected in (("0", ("", False)), ("32", ("", True)),
                           ("7", ("program exited with non-zero exit code: 7", False))):
        (tmp / "exit-code").write_text(code)
        response = stub.Run(request)
        assert (response.error, response.bail) == expected

    record = json.loads((tmp / "record.json").read_text())
    assert record["argv"][:2] == ["--monitor", "127.0.0.1:1"]
    assert record["argv"][-3:] == [".", "a1", "a2"]
    assert record["cwd"] == str(project)
    assert record["env"] == {"PULUMI_CONFIG": '{"proj:x":"1"}', "PULUMI_CONFIG_SECRET_KEYS": "[]",
                             "VIRTUAL_ENV": str(project / "venv")}

    # Required packages are read from the program's interpreter; this test's own stands in.
    if lh.is_virtualenv(sys.prefix):
        own = struct_pb2.Struct()
        own.update({"virtualenv": sys.prefix})
        packages = stub.GetRequiredPackages(language_pb2.GetRequiredPackagesRequest(
            info=language_pb2.ProgramInfo(root_directory=str(project), program_directory=str(project),
                                          entry_point=".", options=own))).packages
        try:
            kubernetes = lh.importlib.metadata.version("pulumi-kubernetes")
            assert ("kubernetes", "resource", "v" + kubernetes) in [
                (p.name, p.kind, p.version) for p in packages]
        except lh.importlib.metadata.PackageNotFoundError:
            pass

    # Methods the engine never needs from us answer UNIMPLEMENTED, which it tolerates.
    for call, message in ((stub.GetRequiredPlugins, language_pb2.GetRequiredPluginsRequest()),
                          (stub.Cancel, empty_pb2.Empty()), (stub.Template, language_pb2.TemplateRequest())):
        with pytest.raises(grpc.RpcError) as failure:
            call(message)
        assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED

    # A missing virtualenv is an RPC error with the real host's instructions.
    options.update({"virtualenv": "nowhere"})
    with pytest.raises(grpc.RpcError) as failure:
        stub.Run(_run_request(info=language_pb2.ProgramInfo(
            root_directory=str(project), program_directory=str(project), entry_point=".", options=options)))
    assert "nowhere" in failure.value.details() and "doesn't exist" in failure.value.details()

    # The engine stops plugins with SIGINT to the process group; the host must leave promptly.
    os.killpg(host.pid, signal.SIGINT)
    assert host.wait(timeout=10) == 0
    # The program's output went to the host's stdout, where the engine shows it to the user.
    assert b"program output" in host.stdout.read()
    assert host.stderr.read() == b""
