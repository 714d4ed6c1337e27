"""Black-box tests of scripts/langhost/, the Go stand-in for Pulumi's Python language host.

The host is built with `go build` once per session and driven over gRPC as the engine drives it:
its command line, the port on stdout, the RPCs, and SIGINT. The user's program is replaced by a
fake exec shim (`--use-executor`) that records its argv and environment; the user's interpreter
is either this test's own virtualenv or a fake `python` that answers the few questions the host
asks it (installed distributions, pip list, venv creation). No Pulumi CLI is needed."""

import importlib.metadata
import json
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc, language_pb2, language_pb2_grpc

REPO = pathlib.Path(__file__).resolve().parents[2]
SOURCE = REPO / "scripts" / "langhost"
VERSIONS = dict(
    line.split("=", 1) for line in (REPO / "scripts" / "versions.env").read_text().splitlines()
    if "=" in line and not line.startswith("#")
)
EXEC_NAME = "pulumi-language-python-exec"


@pytest.fixture(scope="session")
def host_binary(tmp_path_factory) -> pathlib.Path:
    go = shutil.which("go")
    if go is None:
        pytest.fail("Go is not installed, so scripts/langhost cannot be built: install Go (this project's "
                    "machine has it; scripts/toolchain.sh needs it too) and run again")
    out = tmp_path_factory.mktemp("langhost") / "pulumi-language-python"
    env = dict(os.environ, GOWORK="off", GOFLAGS="-buildvcs=false")
    built = subprocess.run([go, "build", "-trimpath", "-o", str(out), "."], cwd=SOURCE, env=env,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, f"go build in {SOURCE} failed:\n{built.stderr}"
    return out


class _FakeEngine(engine_pb2_grpc.EngineServicer):
    def __init__(self):
        self.logs = []

    def Log(self, request, context):
        self.logs.append((request.severity, request.message, request.ephemeral))
        return empty_pb2.Empty()


@pytest.fixture
def engine() -> Iterator[tuple[str, _FakeEngine]]:
    servicer = _FakeEngine()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    engine_pb2_grpc.add_EngineServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(None)


class Host:
    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc = proc
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = language_pb2_grpc.LanguageRuntimeStub(self.channel)

    def stop(self) -> tuple[int, bytes, bytes]:
        """SIGINT to the process group, as the engine stops plugins."""
        self.channel.close()
        os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(timeout=20)
        return code, self.proc.stdout.read(), self.proc.stderr.read()


@contextmanager
def running(binary, *args, cwd, env=None) -> Iterator[Host]:
    proc = subprocess.Popen([str(binary), *args], cwd=cwd, env=env if env is not None else dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        line = proc.stdout.readline()  # the first line of stdout is the port, nothing else
        assert line.strip().isdigit(), (line, proc.stderr.read() if proc.poll() is not None else b"")
        yield Host(proc, int(line))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


FAKE_EXEC = textwrap.dedent("""
    import json, os, sys
    with open(os.environ["RECORD"], "w") as f:
        json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "python": sys.executable,
                   "env": {k: os.environ.get(k) for k in ("PULUMI_CONFIG", "PULUMI_CONFIG_SECRET_KEYS",
                                                          "VIRTUAL_ENV", "PYTHONHOME", "PATH")}}, f)
    print("program output")
    code = int(open(os.environ["EXIT_CODE_FILE"]).read())
    if code < 0:
        os.kill(os.getpid(), -code)
    sys.exit(code)
""")


class World:
    """A project dir, a fake exec shim that records what it got, and the env to start the host in."""

    def __init__(self, tmp: pathlib.Path, binary: pathlib.Path):
        self.tmp, self.binary = tmp, binary
        self.project = tmp / "project"
        self.project.mkdir()
        self.exec = tmp / "fake-exec"
        self.exec.write_text(FAKE_EXEC)
        self.record = tmp / "record.json"
        self.exit_code = tmp / "exit-code"
        self.exit_code.write_text("0")
        self.env = dict(os.environ, RECORD=str(self.record), EXIT_CODE_FILE=str(self.exit_code))

    def venv(self, path: pathlib.Path) -> pathlib.Path:
        """A virtualenv whose python is this test's own interpreter."""
        (path / "bin").mkdir(parents=True)
        (path / "bin" / "python").symlink_to(sys.executable)
        return path

    def info(self, root=None, program=None, entry=".", **options) -> language_pb2.ProgramInfo:
        struct = struct_pb2.Struct()
        struct.update(options)
        return language_pb2.ProgramInfo(root_directory=str(root or self.project),
                                        program_directory=str(program or self.project),
                                        entry_point=entry, options=struct)

    def start(self, *args, env=None):
        return running(self.binary, *args, cwd=self.project, env=env or self.env)

    def recorded(self) -> dict:
        return json.loads(self.record.read_text())


@pytest.fixture
def world(tmp_path, host_binary) -> World:
    return World(tmp_path, host_binary)


def run_request(info, **overrides) -> language_pb2.RunRequest:
    fields = dict(monitor_address="127.0.0.1:1", project="proj", stack="dev", pwd="/p", dryRun=True,
                  parallel=16, organization="org", args=["a1", "a2"], info=info)
    fields.update(overrides)
    return language_pb2.RunRequest(**fields)


# -- the engine's command line -------------------------------------------------------------------


def test_runs_the_program_with_the_real_hosts_exec_arguments(world, engine):
    # plugin.go buildPluginArguments: [--logtostderr] [-v=N] [--tracing X] then the engine address.
    address, _ = engine
    world.venv(world.project / "venv")
    with world.start("--use-executor", str(world.exec), "--tracing", "http://t", address) as host:
        info = world.info(root="/root", program=world.project, virtualenv=str(world.project / "venv"))
        assert host.stub.Run(run_request(info)) == language_pb2.RunResponse()
        assert world.recorded()["argv"] == [
            "--monitor", "127.0.0.1:1", "--engine", address, "--project", "proj", "--root_directory", "/root",
            "--stack", "dev", "--pwd", "/p", "--dry_run", "true", "--parallel", "16", "--tracing", "http://t",
            "--organization", "org", ".", "a1", "a2",
        ]
        # Empty values are left out, booleans are not; no virtualenv: python3 from PATH runs it.
        bare = language_pb2.ProgramInfo(entry_point="main.py")
        host.stub.Run(run_request(bare, organization="", pwd="", dryRun=False, args=[]))
        record = world.recorded()
        assert record["argv"] == ["--monitor", "127.0.0.1:1", "--engine", address, "--project", "proj",
                                  "--stack", "dev", "--dry_run", "false", "--parallel", "16", "--tracing",
                                  "http://t", "main.py"]
        assert record["cwd"] == str(world.project)
        code, out, err = host.stop()
    assert code == 0
    # The program's output went to the host's stdout, where the engine shows it to the user; the
    # host itself says nothing unless asked to log.
    assert out.count(b"program output") == 2
    assert err == b""


def test_go_flag_spellings_unknown_flags_and_logging(world, engine):
    address, _ = engine
    args = ["-use-executor=" + str(world.exec), "-virtualenv", "venv", "--newflag", "--logtostderr", "-v=9", address]
    with world.start(*args) as host:
        host.stub.Run(run_request(language_pb2.ProgramInfo(entry_point=".")))
        assert world.recorded()["argv"][:4] == ["--monitor", "127.0.0.1:1", "--engine", address]
        code, _, err = host.stop()
    assert code == 0
    log = err.decode()
    assert f"pulumi-language-python: language host identified executor: `{world.exec}`" in log
    assert "ignoring flags" in log and "newflag" in log and "virtualenv:venv" in log
    assert "Language host launching process:" in log


def test_a_flag_without_its_value_is_an_error(host_binary, tmp_path):
    done = subprocess.run([str(host_binary), "--tracing"], capture_output=True, text=True, cwd=tmp_path, timeout=20)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", "error: flag needs an argument: -tracing\n")


def test_a_host_started_by_hand_needs_the_handshake(world, engine):
    address, _ = engine
    with world.start("--use-executor", str(world.exec)) as host:
        request = run_request(language_pb2.ProgramInfo(entry_point="."))
        with pytest.raises(grpc.RpcError) as failure:
            host.stub.Run(request)
        assert failure.value.code() == grpc.StatusCode.UNKNOWN
        assert failure.value.details() == "when debugging or running explicitly, must call Handshake before Run"
        host.stub.Handshake(language_pb2.LanguageHandshakeRequest(engine_address=address))
        assert host.stub.Run(request) == language_pb2.RunResponse()
        assert world.recorded()["argv"][2:4] == ["--engine", address]
        assert host.stop()[0] == 0


# -- Run: environment and exit codes -------------------------------------------------------------


def test_config_travels_in_environment_variables_and_the_venv_is_activated(world, engine):
    address, _ = engine
    world.venv(world.project / "venv")
    env = dict(world.env, PYTHONHOME="/nowhere", VIRTUAL_ENV="/old", PATH="/usr/bin:/bin")
    with world.start("--use-executor", str(world.exec), address, env=env) as host:
        # virtualenv relative to the project root, not to the program directory.
        (world.project / "src").mkdir()
        info = world.info(program=world.project / "src", virtualenv="venv")
        host.stub.Run(run_request(info, config={"proj:x": "1", "proj:a": '{"b":1}'}, configSecretKeys=["proj:s"]))
        record = world.recorded()
        assert json.loads(record["env"]["PULUMI_CONFIG"]) == {"proj:x": "1", "proj:a": '{"b":1}'}
        assert json.loads(record["env"]["PULUMI_CONFIG_SECRET_KEYS"]) == ["proj:s"]
        assert record["env"]["VIRTUAL_ENV"] == str(world.project / "venv")
        assert record["env"]["PATH"] == f"{world.project / 'venv' / 'bin'}:/usr/bin:/bin"
        assert record["env"]["PYTHONHOME"] is None
        assert record["python"] == str(world.project / "venv" / "bin" / "python")
        # No config: no PULUMI_CONFIG at all, but the secret keys list is always there.
        host.stub.Run(run_request(info))
        assert {k: v for k, v in world.recorded()["env"].items() if k.startswith("PULUMI")} == {
            "PULUMI_CONFIG": None, "PULUMI_CONFIG_SECRET_KEYS": "[]"}
        assert host.stop()[0] == 0


@pytest.mark.parametrize("code, error, bail", [
    (0, "", False),
    (32, "", True),  # the shim already showed the user a good message
    (3, "program exited with non-zero exit code: 3", False),
    (-signal.SIGKILL, "program exited with non-zero exit code: -1", False),  # killed by a signal, as Go says
])
def test_exit_codes_become_run_responses(world, engine, code, error, bail):
    world.exit_code.write_text(str(code))
    with world.start("--use-executor", str(world.exec), engine[0]) as host:
        response = host.stub.Run(run_request(language_pb2.ProgramInfo(entry_point=".")))
        assert (response.error, response.bail) == (error, bail)
        assert host.stop()[0] == 0


def test_a_missing_or_invalid_virtualenv_gets_the_real_hosts_instructions(world, engine):
    (world.project / "not-a-venv").mkdir()
    with world.start("--use-executor", str(world.exec), engine[0]) as host:
        problems = (("nowhere", "doesn't exist"), ("not-a-venv", "doesn't appear to be a virtual environment"))
        for option, problem in problems:
            with pytest.raises(grpc.RpcError) as failure:
                host.stub.Run(run_request(world.info(virtualenv=option)))
            full = world.project / option
            assert failure.value.details().startswith(
                f"The 'virtualenv' option in Pulumi.yaml is set to \"{option}\", but \"{full}\" {problem}; run the "
                f"following commands to create the virtual environment and install dependencies into it:\n\n"
                f"    1. python3 -m venv {full}\n")
        assert not world.record.exists()
        assert host.stop()[0] == 0


def test_a_uv_or_poetry_project_and_bad_options_are_refused_clearly(world, engine):
    with world.start("--use-executor", str(world.exec), engine[0]) as host:
        def refusal(info) -> str:
            with pytest.raises(grpc.RpcError) as failure:
                host.stub.Run(run_request(info))
            return failure.value.details()

        (world.project / "prog").mkdir()
        (world.project / "uv.lock").write_text("")
        assert refusal(world.info(program=world.project / "prog")) == (
            "the uv toolchain is not supported by this pulumi-language-python (a pip-only stand-in); "
            "set runtime.options.toolchain to pip in Pulumi.yaml")
        (world.project / "uv.lock").unlink()
        (world.project / "poetry.lock").write_text("")
        assert "the poetry toolchain is not supported" in refusal(world.info())
        assert "the uv toolchain is not supported" in refusal(world.info(toolchain="uv"))
        assert refusal(world.info(toolchain="conda")) == "unsupported toolchain option: conda"
        assert refusal(world.info(virtualenv=1)) == "virtualenv option must be a string"
        assert refusal(world.info(typechecker="pytype")) == "unsupported typechecker option: pytype"
        # An explicit pip choice wins over the lock file, as in the real host.
        assert host.stub.Run(run_request(world.info(toolchain="pip"))) == language_pb2.RunResponse()
        assert host.stop()[0] == 0


# -- which resource plugins the installed packages need ------------------------------------------

FAKE_PYTHON = textwrap.dedent("""\
    #!{python}
    # A user's interpreter that answers what the language host asks it, from files beside its venv.
    import json, os, pathlib, shutil, sys
    venv = pathlib.Path(__file__).resolve().parent.parent
    args = sys.argv[1:]
    with open(venv / "calls.log", "a") as log:
        log.write(json.dumps(args[:3]) + "\\n")
    if args[:1] == ["-c"] and "importlib.metadata" in args[1]:
        print((venv / "dists.json").read_text())
    elif args[:3] == ["-m", "pip", "list"]:
        print((venv / "pip-list.json").read_text())
        print("[notice] A new release of pip is available")  # pip may talk after the JSON
    elif args[:3] == ["-m", "pip", "install"]:
        print("pip install", " ".join(args[3:]))
        print("pip says something on stderr", file=sys.stderr)
    elif args[:2] == ["-m", "venv"]:
        target = pathlib.Path(args[2])
        (target / "bin").mkdir(parents=True)
        shutil.copy(__file__, target / "bin" / "python")
        for name in ("dists.json", "pip-list.json"):
            if (venv / name).exists():
                shutil.copy(venv / name, target / name)
    else:
        os.execv(sys.executable, [sys.executable, *args])
""")


def fake_venv(path: pathlib.Path, dists=(), pip_list=()) -> pathlib.Path:
    (path / "bin").mkdir(parents=True)
    python = path / "bin" / "python"
    python.write_text(FAKE_PYTHON.format(python=sys.executable))
    python.chmod(0o755)
    (path / "dists.json").write_text(json.dumps(list(dists)))
    (path / "pip-list.json").write_text(json.dumps(list(pip_list)))
    return path


def dist(site: pathlib.Path, name: str, version: str, plugin_json=None) -> dict:
    module = site / name.lower().replace("-", "_").replace(".", "_")
    module.mkdir(parents=True, exist_ok=True)
    if plugin_json is not None:
        (module / "pulumi-plugin.json").write_text(plugin_json if isinstance(plugin_json, str)
                                                   else json.dumps(plugin_json))
    return {"name": name, "version": version, "location": str(site)}


PEP440 = [
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
]


def required(host: Host, info) -> dict:
    packages = host.stub.GetRequiredPackages(language_pb2.GetRequiredPackagesRequest(info=info)).packages
    return {p.name: p for p in packages}


def test_pep440_versions_translate_to_plugin_versions(world, engine):
    site = world.tmp / "site"
    venv = fake_venv(world.tmp / "venv", [dist(site, f"pulumi-p{i}", v) for i, (v, _) in enumerate(PEP440)])
    with world.start("--use-executor", str(world.exec), engine[0]) as host:
        got = {name: p.version for name, p in required(host, world.info(virtualenv=str(venv))).items()}
        assert got == {f"p{i}": "v" + plugin for i, (_, plugin) in enumerate(PEP440) if plugin is not None}
        assert host.stop()[0] == 0


def test_required_packages_come_from_pulumi_plugin_json_or_the_package_name(world, engine):
    site = world.tmp / "site"
    dists = [
        dist(site, "pulumi-kubernetes", "4.25.0", {"resource": True, "name": "kubernetes", "version": "4.25.0"}),
        dist(site, "Pulumi_Random", "4.16.0"),  # no json: name (PEP 503-normalised) and version derived
        dist(site, "pulumi-random", "1.0.0"),  # a second copy later on sys.path: the first one wins
        dist(site, "pulumi-policy", "1.0.0"),  # known to have no plugin
        dist(site, "pulumi-esc-sdk", "1.0.0"),  # likewise
        dist(site, "pulumi-nothing", "1.0.0", {"resource": False}),
        dist(site, "requests", "2.0.0"),  # not a Pulumi package
        dist(site, "pulumi-local", "1.0.0+abc"),  # not derivable: skipped
        dist(site, "acme-sdk", "0.1.0", {  # third party, parameterized
            "resource": True, "name": "terraform-provider", "version": "0.8.0",
            "server": "github://api.github.com/acme",
            "parameterization": {"name": "acme", "version": "0.1.0", "value": "aGk="}}),
    ]
    venv = fake_venv(world.tmp / "venv", dists)
    with world.start("--use-executor", str(world.exec), engine[0]) as host:
        got = required(host, world.info(virtualenv=str(venv)))
        assert sorted(got) == ["kubernetes", "random", "terraform-provider"]
        assert (got["kubernetes"].kind, got["kubernetes"].version) == ("resource", "v4.25.0")
        assert got["random"].version == "v4.16.0"
        acme = got["terraform-provider"]
        assert (acme.version, acme.server) == ("v0.8.0", "github://api.github.com/acme")
        assert (acme.parameterization.name, acme.parameterization.version, acme.parameterization.value) == (
            "acme", "0.1.0", b"hi")
        assert not got["kubernetes"].HasField("parameterization")

        # A broken pulumi-plugin.json is an error naming the file.
        dist(site, "pulumi-broken", "1.0.0", "{not json")
        (venv / "dists.json").write_text(json.dumps([dist(site, "pulumi-broken", "1.0.0")]))
        with pytest.raises(grpc.RpcError) as failure:
            required(host, world.info(virtualenv=str(venv)))
        assert failure.value.details().startswith(f"reading {site / 'pulumi_broken' / 'pulumi-plugin.json'}: ")
        assert host.stop()[0] == 0


def test_required_packages_of_a_real_interpreter(world, engine):
    # This test's own virtualenv stands in for the user's: pulumi-kubernetes is in requirements.txt.
    with world.start("--use-executor", str(world.exec), engine[0]) as host:
        got = required(host, world.info(virtualenv=sys.prefix))
        assert got["kubernetes"].version == "v" + importlib.metadata.version("pulumi-kubernetes")
        assert "pulumi" not in got and "policy" not in got
        assert host.stop()[0] == 0


def test_a_missing_virtualenv_is_created_before_listing_packages(world, engine, tmp_path):
    # The ambient python (PULUMI_PYTHON_CMD) creates the venv; pip's output goes to the engine's log.
    address, fake_engine = engine
    ambient = fake_venv(tmp_path / "ambient", [dist(tmp_path / "site", "pulumi-random", "4.16.0")])
    (world.project / "requirements.txt").write_text("pulumi-random\n")
    env = dict(world.env, PULUMI_PYTHON_CMD=str(ambient / "bin" / "python"))
    with world.start("--use-executor", str(world.exec), address, env=env) as host:
        got = required(host, world.info(virtualenv="venv"))
        assert got["random"].version == "v4.16.0"
        assert (world.project / "venv" / "bin" / "python").is_file()
        # stdout as INFO, stderr as ERROR, each in order.
        messages = "".join(message for severity, message, _ in fake_engine.logs if severity == engine_pb2.INFO)
        errors = "".join(message for severity, message, _ in fake_engine.logs if severity == engine_pb2.ERROR)
        assert "pip says something on stderr" in errors
        assert "Creating virtual environment..." in messages
        assert "pip install --upgrade pip setuptools wheel" in messages
        assert "pip install -r requirements.txt" in messages
        assert all(ephemeral for _, _, ephemeral in fake_engine.logs)
        assert host.stop()[0] == 0


# -- the other RPCs ------------------------------------------------------------------------------


def test_plugin_info_about_and_dependencies(world, engine):
    with world.start("--use-executor", str(world.exec), engine[0]) as host:
        version = host.stub.GetPluginInfo(empty_pb2.Empty()).version
        assert version == VERSIONS["PULUMI_VERSION"] == importlib.metadata.version("pulumi")

        about = host.stub.About(language_pb2.AboutRequest(info=world.info(virtualenv=sys.prefix)))
        assert about.executable == str(pathlib.Path(sys.prefix) / "bin" / "python")
        assert about.version == platform.python_version()
        ambient = host.stub.About(language_pb2.AboutRequest())  # no program: python3 from PATH
        assert os.path.isabs(ambient.executable) and ambient.version.count(".") == 2

        deps = host.stub.GetProgramDependencies(language_pb2.GetProgramDependenciesRequest(
            transitiveDependencies=True, info=world.info(virtualenv=sys.prefix))).dependencies
        assert ("pulumi", importlib.metadata.version("pulumi")) in [(d.name, d.version) for d in deps]
        assert ("pulumi-kubernetes", importlib.metadata.version("pulumi-kubernetes")) in [
            (d.name, d.version) for d in deps]
        with pytest.raises(grpc.RpcError) as failure:
            host.stub.GetProgramDependencies(language_pb2.GetProgramDependenciesRequest(
                info=world.info(toolchain="uv")))
        assert failure.value.details().startswith("failed to get python dependencies: the uv toolchain")
        assert host.stop()[0] == 0


def test_the_typechecker_must_be_installed(world, engine):
    venv = fake_venv(world.project / "venv", pip_list=[{"name": "pulumi", "version": "3.0.0"}])
    with world.start("--use-executor", str(world.exec), engine[0]) as host:
        with pytest.raises(grpc.RpcError) as failure:
            host.stub.Run(run_request(world.info(virtualenv="venv", typechecker="mypy")))
        assert failure.value.details() == (
            "The typechecker option is set to mypy, but mypy is not installed. Please add an entry for mypy to "
            "requirements.txt and run `venv/bin/pip install -r requirements.txt`")
        assert not world.record.exists()
        assert json.dumps(["-m", "pip", "list"]) in (venv / "calls.log").read_text()
        assert host.stop()[0] == 0


def test_install_dependencies_streams_pips_output(world, engine, tmp_path):
    ambient = fake_venv(tmp_path / "ambient")
    (world.project / "requirements.txt").write_text("pulumi\n")
    env = dict(world.env, PULUMI_PYTHON_CMD=str(ambient / "bin" / "python"))
    with world.start("--use-executor", str(world.exec), engine[0], env=env) as host:
        request = language_pb2.InstallDependenciesRequest(
            directory=str(world.project), info=world.info(virtualenv=str(world.project / "venv")))
        chunks = list(host.stub.InstallDependencies(request))
        out = b"".join(c.stdout for c in chunks).decode()
        err = b"".join(c.stderr for c in chunks).decode()
        assert out.startswith("Installing dependencies...\n\nCreating virtual environment...\n")
        assert "pip install --upgrade pip setuptools wheel\n" in out
        assert "pip install -r requirements.txt\n" in out
        assert out.endswith("Finished installing dependencies\nFinished installing dependencies\n\n")
        assert "pip says something on stderr" in err
        with pytest.raises(grpc.RpcError) as failure:
            list(host.stub.InstallDependencies(language_pb2.InstallDependenciesRequest(
                info=world.info(), use_language_version_tools=True)))
        assert "--use-language-version-tools" in failure.value.details()
        assert host.stop()[0] == 0


def test_runtime_options_prompts(world, engine):
    with world.start("--use-executor", str(world.exec), engine[0]) as host:
        prompts = host.stub.RuntimeOptionsPrompts(language_pb2.RuntimeOptionsRequest(info=world.info())).prompts
        assert [p.key for p in prompts] == ["toolchain"]
        assert prompts[0].default.stringValue == "pip"
        assert sorted(c.stringValue for c in prompts[0].choices) == ["pip", "poetry", "uv"]
        prompts = host.stub.RuntimeOptionsPrompts(
            language_pb2.RuntimeOptionsRequest(info=world.info(toolchain="pip"))).prompts
        assert [(p.key, p.default.stringValue) for p in prompts] == [("virtualenv", "venv")]
        assert host.stop()[0] == 0


def test_what_the_engine_never_needs_is_unimplemented(world, engine):
    with world.start("--use-executor", str(world.exec), engine[0]) as host:
        for call, message in ((host.stub.GetRequiredPlugins, language_pb2.GetRequiredPluginsRequest()),
                              (host.stub.Cancel, empty_pb2.Empty()),
                              (host.stub.Template, language_pb2.TemplateRequest())):
            with pytest.raises(grpc.RpcError) as failure:
                call(message)
            assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert host.stop()[0] == 0


# -- finding the exec shim, and going away -------------------------------------------------------


def _shim(directory: pathlib.Path, label: str) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / EXEC_NAME
    shim.write_text(f"import os, json\nopen(os.environ['RECORD'], 'w').write(json.dumps({{'shim': {label!r}}}))\n")
    shim.chmod(0o755)  # on PATH, only executables count
    return shim


def test_the_exec_shim_is_looked_for_beside_the_host_then_on_path_then_in_the_go_module_cache(world, engine, tmp_path):
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    shutil.copy(world.binary, host_dir / "pulumi-language-python")
    modcache = tmp_path / "modcache"
    sdk = modcache / "github.com" / "pulumi" / "pulumi" / "sdk" / f"v3@v{VERSIONS['PULUMI_VERSION']}"
    _shim(sdk / "python" / "cmd", "modcache")
    _shim(tmp_path / "on-path", "path")
    _shim(host_dir, "beside")
    # PATH without the dirs that hold a real shim (such as the toolchain's pulumi dir).
    path = [d for d in os.environ["PATH"].split(os.pathsep) if d and not os.path.exists(os.path.join(d, EXEC_NAME))]
    env = dict(world.env, GOMODCACHE=str(modcache), PATH=os.pathsep.join([str(tmp_path / "on-path"), *path]))

    def used() -> str:
        with running(host_dir / "pulumi-language-python", engine[0], cwd=world.project, env=env) as host:
            host.stub.Run(run_request(language_pb2.ProgramInfo(entry_point=".")))
            host.stop()
        return world.recorded()["shim"]

    assert used() == "beside"
    (host_dir / EXEC_NAME).unlink()
    assert used() == "path"
    (tmp_path / "on-path" / EXEC_NAME).unlink()
    assert used() == "modcache"
    shutil.rmtree(modcache)
    done = subprocess.run([str(host_dir / "pulumi-language-python"), engine[0]], capture_output=True, text=True,
                          env=env, timeout=20)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: missing executor {EXEC_NAME}: not beside ")


def _gone(pid: int) -> bool:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


def test_a_launched_host_leaves_when_its_parent_is_gone(world, engine, tmp_path):
    # A parent that starts the host, reads its port as the engine does and exits, as a crashed
    # engine would.
    launcher = ("import subprocess, sys; out = open(sys.argv[0] + '.out', 'w');"
                " p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=out);"
                " p.stdout.readline(); print(p.pid)")
    script = tmp_path / "launcher"
    done = subprocess.run([sys.executable, "-c", launcher.replace("sys.argv[0]", repr(str(script))),
                           str(world.binary), "--use-executor", str(world.exec), engine[0]],
                          capture_output=True, text=True, timeout=20)
    pid = int(done.stdout)
    deadline = time.monotonic() + 30  # a bound on the wait, not a figure under test
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(pid)
