package main

// The gRPC service: pulumirpc.LanguageRuntime, RPC by RPC.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
)

const (
	// Environment variables the SDK (pulumi.runtime.get_config_env & co.) reads the stack config from.
	configVar           = "PULUMI_CONFIG"
	configSecretKeysVar = "PULUMI_CONFIG_SECRET_KEYS"
	// The exec shim exits with 32 after it has already shown the user a good error message; the
	// engine is then told to "bail" without adding one of its own.
	userActionableExitCode = 32
)

var errNoEngine = errors.New("when debugging or running explicitly, must call Handshake before Run")

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	executor         string
	tracing          string
	version          string
	onEngineAddress  func(string)
	mu               sync.Mutex
	engineAddress    string
	engine           pulumirpc.EngineClient // dialled on first use
	engineForAddress string
}

func newHost(executor, engineAddress, tracing, version string, onEngineAddress func(string)) *host {
	return &host{executor: executor, engineAddress: engineAddress, tracing: tracing, version: version,
		onEngineAddress: onEngineAddress}
}

func (h *host) engineAddr() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.engineAddress
}

func programOptions(info *pulumirpc.ProgramInfo) (pythonOptions, error) {
	return parseOptions(info.GetRootDirectory(), info.GetProgramDirectory(), info.GetOptions())
}

// programToolchain is the Python toolchain the program's runtime options name.
func programToolchain(info *pulumirpc.ProgramInfo) (*pipToolchain, error) {
	opts, err := programOptions(info)
	if err != nil {
		return nil, err
	}
	return resolveToolchain(opts)
}

// engineWriters send a command's output to the engine as ephemeral log lines (the real host's
// logWriter), for work done outside a streaming RPC, such as creating a missing virtualenv.
func (h *host) engineWriters(ctx context.Context) (writer, writer, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.engineAddress == "" {
		return nil, nil, errNoEngine
	}
	if h.engine == nil || h.engineForAddress != h.engineAddress {
		conn, err := grpc.NewClient(h.engineAddress, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRPCMessageSize), grpc.MaxCallSendMsgSize(maxRPCMessageSize)))
		if err != nil {
			return nil, nil, err
		}
		h.engine, h.engineForAddress = pulumirpc.NewEngineClient(conn), h.engineAddress
	}
	engine, streamID := h.engine, rand.Int32()
	var order sync.Mutex // one log line at a time, in the order they came
	to := func(severity pulumirpc.LogSeverity) writer {
		return func(chunk []byte) {
			order.Lock()
			defer order.Unlock()
			_, err := engine.Log(ctx, &pulumirpc.LogRequest{Severity: severity, Message: string(chunk),
				Ephemeral: true, StreamId: streamID})
			if err != nil {
				logf(3, "sending output to the engine: %v", err)
			}
		}
	}
	return to(pulumirpc.LogSeverity_INFO), to(pulumirpc.LogSeverity_ERROR), nil
}

// --- RPCs the engine uses for `pulumi preview/up/destroy` --------------------------------------

// Handshake is only sent when the engine attaches to an already running host
// (PULUMI_DEBUG_LANGUAGES); a host it launches itself gets the engine address on the command line.
func (h *host) Handshake(ctx context.Context, req *pulumirpc.LanguageHandshakeRequest) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	h.engineAddress = req.GetEngineAddress()
	h.mu.Unlock()
	h.onEngineAddress(req.GetEngineAddress())
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(ctx context.Context, _ *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: h.version}, nil
}

// GetRequiredPlugins is deprecated; the real host answers Unimplemented too (the embedded
// UnimplementedLanguageRuntimeServer), and the engine copes.

func (h *host) GetRequiredPackages(ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest) (*pulumirpc.GetRequiredPackagesResponse, error) {
	toolchain, err := programToolchain(req.GetInfo())
	if err != nil {
		return nil, err
	}
	out, errw, err := h.engineWriters(ctx)
	if err != nil {
		return nil, err
	}
	if err := toolchain.ensureVenv(req.GetInfo().GetProgramDirectory(), out, errw); err != nil {
		return nil, err
	}
	distributions, err := toolchain.installedDistributions()
	if err != nil {
		return nil, err
	}
	packages, err := requiredPackages(distributions)
	if err != nil {
		return nil, err
	}
	if logLevel >= 5 {
		names := make([]string, len(packages))
		for i, p := range packages {
			names[i] = p.Name + " " + p.Version
		}
		logf(5, "GetRequiredPackages: %v", names)
	}
	return &pulumirpc.GetRequiredPackagesResponse{Packages: packages}, nil
}

// constructArguments gives the exec shim's flags, in the real host's order; empty values are
// left out.
func constructArguments(req *pulumirpc.RunRequest, engineAddress, tracing string) []string {
	var args []string
	maybe := func(name, value string) {
		if value != "" {
			args = append(args, "--"+name, value)
		}
	}
	maybe("monitor", req.GetMonitorAddress())
	maybe("engine", engineAddress)
	maybe("project", req.GetProject())
	maybe("root_directory", req.GetInfo().GetRootDirectory())
	maybe("stack", req.GetStack())
	maybe("pwd", req.GetPwd())
	maybe("dry_run", strconv.FormatBool(req.GetDryRun()))
	maybe("parallel", strconv.Itoa(int(req.GetParallel())))
	maybe("tracing", tracing)
	maybe("organization", req.GetOrganization())
	// The engine always names an entry point, if only "." for the program directory.
	args = append(args, req.GetInfo().GetEntryPoint())
	return append(args, req.GetArgs()...)
}

// configEnvironment gives the stack config for the SDK: PULUMI_CONFIG only when there is config
// (as the real host: Go's empty proto map is nil), PULUMI_CONFIG_SECRET_KEYS always, "[]" when none.
func configEnvironment(req *pulumirpc.RunRequest) ([]string, error) {
	var env []string
	if len(req.GetConfig()) > 0 {
		config, err := json.Marshal(req.GetConfig()) // keys sorted
		if err != nil {
			return nil, err
		}
		env = append(env, configVar+"="+string(config))
	}
	keys := req.GetConfigSecretKeys()
	if keys == nil {
		keys = []string{}
	}
	secretKeys, err := json.Marshal(keys)
	if err != nil {
		return nil, err
	}
	return append(env, configSecretKeysVar+"="+string(secretKeys)), nil
}

func runResponseForExit(code int) *pulumirpc.RunResponse {
	switch code {
	case 0:
		return &pulumirpc.RunResponse{}
	case userActionableExitCode:
		// The program already printed a good message: tell the engine to just stop.
		return &pulumirpc.RunResponse{Bail: true}
	}
	// Go's ExitCode() is -1 for a process killed by a signal.
	return &pulumirpc.RunResponse{Error: fmt.Sprintf("program exited with non-zero exit code: %d", code)}
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	engineAddress := h.engineAddr()
	if engineAddress == "" {
		return nil, errNoEngine
	}
	opts, err := programOptions(req.GetInfo())
	if err != nil {
		return nil, err
	}
	if req.GetAttachDebugger() {
		return &pulumirpc.RunResponse{Error: "attaching a debugger is not supported by this pulumi-language-python"}, nil
	}
	args := append([]string{h.executor}, constructArguments(req, engineAddress, h.tracing)...)
	toolchain, err := resolveToolchain(opts)
	if err != nil {
		return nil, err
	}
	if err := toolchain.validateVenv(); err != nil {
		return nil, err
	}
	argv, env, err := toolchain.command(args...)
	if err != nil {
		return nil, err
	}
	if env == nil {
		env = os.Environ()
	}
	config, err := configEnvironment(req)
	if err != nil {
		return nil, err
	}
	env = append(env, config...) // later entries win
	if opts.typechecker != "" {
		if err := typecheck(toolchain, opts, req.GetInfo().GetProgramDirectory()); err != nil {
			return nil, err
		}
	}

	logf(5, "Language host launching process: %s", strings.Join(argv, " "))
	// stdout/stderr are ours, which the engine reads and shows to the user.
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("problem executing program (could not run language executor): %v", err)}, nil
	}
	_ = cmd.Wait()
	return runResponseForExit(cmd.ProcessState.ExitCode()), nil
}

func typecheck(toolchain *pipToolchain, opts pythonOptions, programDir string) error {
	checker := opts.typechecker
	args := []string{"-m", checker}
	if checker == "mypy" && toolchain.virtualenvPath != "" {
		if rel, err := filepath.Rel(programDir, toolchain.virtualenvPath); err == nil {
			args = append(args, "--exclude", rel)
		}
	}
	args = append(args, programDir)
	packages, err := toolchain.listPackages(true)
	if err != nil {
		return err
	}
	installed := false
	for _, p := range packages {
		installed = installed || p.Name == checker
	}
	if !installed {
		pip := filepath.Join(opts.virtualenv, "bin", "pip")
		return fmt.Errorf("The typechecker option is set to %s, but %s is not installed. Please add an entry "+
			"for %s to requirements.txt and run `%s install -r requirements.txt`", checker, checker, checker, pip)
	}
	argv, env, err := toolchain.command(args...)
	if err != nil {
		return err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = programDir, env, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s failed: %w", checker, err)
	}
	return nil
}

func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	opts := pythonOptions{toolchain: "pip"}
	if req.GetInfo() != nil {
		var err error
		if opts, err = programOptions(req.GetInfo()); err != nil {
			return nil, err
		}
	}
	toolchain, err := resolveToolchain(opts)
	if err != nil {
		return nil, err
	}
	executable, err := toolchain.output("-c", "import sys; print(sys.executable)")
	if err != nil {
		return nil, err
	}
	version := "0.0.0" // the real host ignores an unparsable version, too
	if text, err := toolchain.output("--version"); err == nil {
		if parsed, err := parsePythonVersion(text); err == nil {
			version = parsed
		}
	}
	return &pulumirpc.AboutResponse{Executable: strings.TrimSpace(executable), Version: version}, nil
}

func (h *host) GetProgramDependencies(ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest) (*pulumirpc.GetProgramDependenciesResponse, error) {
	packages, err := func() ([]installedPackage, error) {
		toolchain, err := programToolchain(req.GetInfo())
		if err != nil {
			return nil, err
		}
		return toolchain.listPackages(req.GetTransitiveDependencies())
	}()
	if err != nil {
		return nil, fmt.Errorf("failed to get python dependencies: %w", err)
	}
	dependencies := make([]*pulumirpc.DependencyInfo, len(packages))
	for i, p := range packages {
		dependencies[i] = &pulumirpc.DependencyInfo{Name: p.Name, Version: p.Version}
	}
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: dependencies}, nil
}

// --- `pulumi install` / `pulumi new` -------------------------------------------------------------

func (h *host) InstallDependencies(req *pulumirpc.InstallDependenciesRequest,
	stream grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse]) error {
	opts, err := programOptions(req.GetInfo())
	if err != nil {
		return err
	}
	if req.GetIsPlugin() && opts.toolchain == "pip" && opts.virtualenv == "" {
		opts.virtualenv = "venv" // plugins never run in the ambient Python
	}
	if req.GetUseLanguageVersionTools() {
		return errors.New("installing Python with pyenv (--use-language-version-tools) is " +
			"not supported by this pulumi-language-python")
	}
	toolchain, err := resolveToolchain(opts)
	if err != nil {
		return err
	}
	var mu sync.Mutex // pip's stdout and stderr come from two goroutines
	send := func(response *pulumirpc.InstallDependenciesResponse) {
		mu.Lock()
		defer mu.Unlock()
		_ = stream.Send(response)
	}
	out := writer(func(b []byte) { send(&pulumirpc.InstallDependenciesResponse{Stdout: b}) })
	errw := writer(func(b []byte) { send(&pulumirpc.InstallDependenciesResponse{Stderr: b}) })
	out([]byte("Installing dependencies...\n\n"))
	if err := toolchain.installDependencies(req.GetInfo().GetProgramDirectory(), out, errw); err != nil {
		return err
	}
	out([]byte("Finished installing dependencies\n\n"))
	return nil
}

// RuntimeOptionsPrompts gives the questions `pulumi new` asks: which toolchain, then (for pip)
// which virtualenv.
func (h *host) RuntimeOptionsPrompts(ctx context.Context, req *pulumirpc.RuntimeOptionsRequest) (*pulumirpc.RuntimeOptionsResponse, error) {
	options := req.GetInfo().GetOptions().GetFields()
	const stringType = pulumirpc.RuntimeOptionPrompt_STRING
	var prompts []*pulumirpc.RuntimeOptionPrompt
	if _, ok := options["toolchain"]; !ok {
		pip := &pulumirpc.RuntimeOptionPrompt_RuntimeOptionValue{PromptType: stringType, StringValue: "pip", DisplayName: "pip"}
		choices := []*pulumirpc.RuntimeOptionPrompt_RuntimeOptionValue{pip}
		var missing []*pulumirpc.RuntimeOptionPrompt_RuntimeOptionValue
		for _, name := range []string{"poetry", "uv"} { // found first
			if _, err := lookPath(name); err == nil {
				choices = append(choices, &pulumirpc.RuntimeOptionPrompt_RuntimeOptionValue{
					PromptType: stringType, StringValue: name, DisplayName: name})
			} else {
				missing = append(missing, &pulumirpc.RuntimeOptionPrompt_RuntimeOptionValue{
					PromptType: stringType, StringValue: name, DisplayName: name + " [not found]"})
			}
		}
		prompts = append(prompts, &pulumirpc.RuntimeOptionPrompt{
			Key: "toolchain", PromptType: stringType, Choices: append(choices, missing...), Default: pip,
			Description: "The toolchain to use for installing dependencies and running the program"})
	} else if options["toolchain"].GetStringValue() == "pip" {
		if _, ok := options["virtualenv"]; !ok {
			venv := &pulumirpc.RuntimeOptionPrompt_RuntimeOptionValue{PromptType: stringType, StringValue: "venv"}
			prompts = append(prompts, &pulumirpc.RuntimeOptionPrompt{
				Key: "virtualenv", Description: "The virtualenv to use", PromptType: stringType,
				Choices: []*pulumirpc.RuntimeOptionPrompt_RuntimeOptionValue{venv}, Default: venv})
		}
	}
	return &pulumirpc.RuntimeOptionsResponse{Prompts: prompts}, nil
}

// Everything else (GetRequiredPlugins, Template, RunPlugin, GenerateProgram/Project/Package, Pack,
// Link, Cancel) is answered UNIMPLEMENTED by the embedded UnimplementedLanguageRuntimeServer. The
// engine treats UNIMPLEMENTED from Template and Cancel as "nothing to do"; the others are codegen,
// Python plugins and conformance tests, which this project does not use.
