// Command pulumi-language-python is a stand-in for Pulumi's Python language host.
//
// The Pulumi CLI runs a Python program through a "language host" plugin called
// pulumi-language-python: a gRPC server implementing pulumirpc.LanguageRuntime. The real one
// lives in its own Go module (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3),
// which the Go module proxy does not serve, so it cannot be built here. This is a small stand-in
// that uses only the generated gRPC stubs of the Pulumi SDK module (proto/go), modelled on the real
// host's main.go and on the engine's client side (sdk/go/common/resource/plugin/{plugin.go,
// langruntime_plugin.go}, sdk/python/toolchain/pip.go) at the SDK version in go.mod. See
// README.md beside this file for what is and is not covered.
//
// Contract with the engine (plugin.go: newPlugin/dialPlugin/testConnection):
//   - argv: [--logtostderr] [-v=N] [--tracing ENDPOINT] ENGINE_ADDRESS (Go flag syntax);
//   - we serve gRPC on 127.0.0.1:<free port> and print that port as the first stdout line;
//   - everything we (or the user's program) write to stdout/stderr afterwards is shown to the
//     user as diagnostics, so we stay quiet unless asked to log (--logtostderr -v=N);
//   - to stop us the engine sends SIGINT to our process group, then SIGKILL after 5 s.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

const (
	// The SDK shim that actually runs the user's program. The real host finds it beside its own
	// binary; it ships in the Go SDK module (python/cmd/), not in the pulumi wheel.
	executorName = "pulumi-language-python-exec"
	// The SDK module whose version this host reports (it is built against its gRPC stubs).
	sdkModule = "github.com/pulumi/pulumi/sdk/v3"
	// The real host pings the engine's health service this often and stops when it is gone.
	engineHealthcheckInterval = 5 * time.Minute
	// A quicker check of our own (not in the real host): if the engine that launched us dies,
	// we are re-parented; then we leave rather than wait for the next health check.
	parentCheckInterval = 2 * time.Second
	// Same limit as the Go side's rpcutil.GrpcChannelOptions: 400 MiB.
	maxRPCMessageSize = 400 * 1024 * 1024
)

// --- command line: the engine speaks Go's flag syntax to us ------------------------------------

// Flags that take a value; everything except the glog booleans below.
var valueFlags = map[string]bool{
	"tracing": true, "use-executor": true, "v": true, "virtualenv": true, "root": true,
	"typechecker": true, "toolchain": true, "log_dir": true, "log_backtrace_at": true,
	"stderrthreshold": true, "vmodule": true,
}
var boolFlags = map[string]bool{"logtostderr": true, "alsologtostderr": true, "logflow": true}

type hostArgs struct {
	tracing       string
	useExecutor   string
	engineAddress string
	verbose       int
	logtostderr   bool
	// Flags we accept but ignore, like the real host does for its [obsolete] ones.
	ignored map[string]string
}

// parseHostArgs reads argv[1:] the way Go's flag package does (-name, --name, -name=value,
// -name value; flags stop at the first non-flag argument or at --), except that an unknown flag
// is kept aside instead of being fatal: a new engine flag should not stop a deployment. The first
// positional argument is the engine's gRPC address (the engine always puts it last).
func parseHostArgs(argv []string) (hostArgs, error) {
	result := hostArgs{ignored: map[string]string{}}
	values := map[string]string{}
	i := 0
	for ; i < len(argv); i++ {
		arg := argv[i]
		if arg == "--" {
			i++
			break
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			break
		}
		name := strings.TrimLeft(arg, "-")
		value, hasValue := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, value, hasValue = k, v, true
		}
		switch {
		case boolFlags[name]:
			if !hasValue {
				value = "true"
			}
			values[name] = value
		case valueFlags[name]:
			if !hasValue {
				i++
				if i >= len(argv) {
					return result, fmt.Errorf("flag needs an argument: -%s", name)
				}
				value = argv[i]
			}
			values[name] = value
		default:
			if !hasValue {
				value = "true"
			}
			result.ignored[name] = value
		}
	}
	pop := func(name, fallback string) string {
		if v, ok := values[name]; ok {
			delete(values, name)
			return v
		}
		return fallback
	}
	result.tracing = pop("tracing", "")
	result.useExecutor = pop("use-executor", "")
	if n, err := strconv.Atoi(pop("v", "0")); err == nil && n >= 0 {
		result.verbose = n
	}
	switch strings.ToLower(pop("logtostderr", "false")) {
	case "1", "t", "true":
		result.logtostderr = true
	}
	for k, v := range values {
		result.ignored[k] = v
	}
	if i < len(argv) {
		result.engineAddress = argv[i]
	}
	return result, nil
}

var logLevel = 0 // set from -v when --logtostderr is given; stays 0 (silent) otherwise

// logf is logging.V(level).Infof in the real host: off unless the engine flowed -v and
// --logtostderr to us (pulumi -v=N --logflow --logtostderr ...).
func logf(level int, format string, args ...any) {
	if logLevel >= level {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: "+format+"\n", args...)
	}
}

// sdkVersion is the version of the Pulumi SDK module this binary was built with (go.mod), without
// its "v": what GetPluginInfo reports and where the exec shim is in the Go module cache.
func sdkVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == sdkModule {
				return strings.TrimPrefix(dep.Version, "v")
			}
		}
	}
	return ""
}

// --- locating the exec shim ----------------------------------------------------------------

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// findExecutor: --use-executor wins (as in the real host); then beside this binary (the real
// host's only place); then beside the pulumi CLI that started us, where the real one is bundled;
// then PATH; then the Go module cache, which ships it in the matching SDK module.
func findExecutor(given, version string) string {
	if given != "" {
		return given
	}
	var beside []string
	if self, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(self); err == nil {
			self = real
		}
		beside = append(beside, filepath.Dir(self))
	}
	if parent, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", os.Getppid())); err == nil {
		beside = append(beside, filepath.Dir(parent))
	}
	for _, dir := range beside {
		if candidate := filepath.Join(dir, executorName); isFile(candidate) {
			return candidate
		}
	}
	if found, err := lookPath(executorName); err == nil {
		return found
	}
	modcache := os.Getenv("GOMODCACHE")
	if modcache == "" {
		gopath := os.Getenv("GOPATH")
		if gopath == "" {
			home, _ := os.UserHomeDir()
			gopath = filepath.Join(home, "go")
		}
		modcache = filepath.Join(gopath, "pkg", "mod")
	}
	cached := filepath.Join(modcache, "github.com", "pulumi", "pulumi", "sdk", "v3@v"+version,
		"python", "cmd", executorName)
	if version != "" && isFile(cached) {
		return cached
	}
	return ""
}

// --- serving, and going away when the engine does -------------------------------------------

// watchEngine is rpcutil.Healthcheck: every 5 minutes ask the engine's grpc.health.v1 service;
// stop on any error but Unimplemented.
func watchEngine(address string, stop func()) {
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		logf(3, "cannot watch engine at %s: %v", address, err)
		return
	}
	client := healthpb.NewHealthClient(conn)
	for {
		time.Sleep(engineHealthcheckInterval)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err != nil && status.Code(err) != codes.Unimplemented {
			logf(3, "engine at %s is gone (%v); shutting down", address, status.Code(err))
			stop()
			return
		}
	}
}

func watchParent(stop func()) {
	for {
		time.Sleep(parentCheckInterval)
		if os.Getppid() != launchedBy {
			logf(3, "parent process exited; shutting down")
			stop()
			return
		}
	}
}

// The process that started us, read first thing: the parent watch compares against it.
var launchedBy = os.Getppid()

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(argv []string) int {
	args, err := parseHostArgs(argv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 2
	}
	if args.logtostderr {
		logLevel = args.verbose
	}
	if len(args.ignored) > 0 {
		logf(3, "ignoring flags %v", args.ignored)
	}

	version := sdkVersion()
	executor := findExecutor(args.useExecutor, version)
	if executor == "" {
		self, _ := os.Executable()
		fmt.Fprintf(os.Stderr, "error: missing executor %s: not beside %s, on PATH, or in the Go module cache\n",
			executorName, self)
		return 1
	}
	logf(3, "language host identified executor: `%s`", executor)

	stopped := make(chan struct{})
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(stopped) }) }
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-signals; stop() }()

	startEngineWatch := func(address string) {
		if address != "" {
			go watchEngine(address, stop)
		}
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: could not start language host RPC server: %v\n", err)
		return 1
	}
	server := grpc.NewServer(grpc.MaxRecvMsgSize(maxRPCMessageSize), grpc.MaxSendMsgSize(maxRPCMessageSize))
	pulumirpc.RegisterLanguageRuntimeServer(server, newHost(executor, args.engineAddress, args.tracing,
		version, startEngineWatch))
	go func() { _ = server.Serve(listener) }()
	// The engine reads exactly one line from our stdout: the port.
	fmt.Println(listener.Addr().(*net.TCPAddr).Port)

	startEngineWatch(args.engineAddress)
	if args.engineAddress != "" {
		// Launched by the engine (not started by hand for it to attach to): its child for life.
		go watchParent(stop)
	}
	<-stopped
	// Handlers may still be waiting on a program the engine has given up on; like the real host,
	// just leave (the program got the same SIGINT from the engine).
	server.Stop()
	return 0
}
