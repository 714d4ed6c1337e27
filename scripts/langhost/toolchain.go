package main

// Runtime options and the (pip-only) toolchain: python/toolchain/{toolchain,pip}.go.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"google.golang.org/protobuf/types/known/structpb"
)

type pythonOptions struct {
	root        string
	programDir  string
	virtualenv  string
	typechecker string // "", "mypy" or "pyright"
	toolchain   string // "auto", "pip", "poetry" or "uv"
}

// parseOptions checks Pulumi.yaml's runtime.options (sent as a google.protobuf.Struct).
func parseOptions(root, programDir string, options *structpb.Struct) (pythonOptions, error) {
	opts := pythonOptions{root: root, programDir: programDir, toolchain: "auto"}
	fields := options.GetFields()
	str := func(key string) (string, bool, error) {
		value, ok := fields[key]
		if !ok {
			return "", false, nil
		}
		s, isString := value.GetKind().(*structpb.Value_StringValue)
		if !isString {
			return "", true, fmt.Errorf("%s option must be a string", key)
		}
		return s.StringValue, true, nil
	}
	if v, ok, err := str("virtualenv"); err != nil {
		return opts, err
	} else if ok {
		opts.virtualenv = v
	}
	if v, ok, err := str("typechecker"); err != nil {
		return opts, err
	} else if ok {
		if v != "mypy" && v != "pyright" {
			return opts, fmt.Errorf("unsupported typechecker option: %s", v)
		}
		opts.typechecker = v
	}
	if v, ok, err := str("toolchain"); err != nil {
		return opts, err
	} else if ok {
		switch v {
		case "auto", "pip", "poetry", "uv":
		default:
			return opts, fmt.Errorf("unsupported toolchain option: %s", v)
		}
		opts.toolchain = v
	}
	return opts, nil
}

func resolveVirtualenvPath(root, virtualenv string) string {
	if virtualenv == "" || filepath.IsAbs(virtualenv) {
		return virtualenv
	}
	return filepath.Join(root, virtualenv)
}

func searchUp(dir, filename string) bool {
	for {
		if _, err := os.Stat(filepath.Join(dir, filename)); err == nil {
			return true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return false
		}
		dir = parent
	}
}

func isVirtualenv(dir string) bool { return isFile(filepath.Join(dir, "bin", "python")) }

// activateVirtualenv is toolchain.ActivateVirtualEnv: venv/bin first on PATH, VIRTUAL_ENV set,
// PYTHONHOME unset.
func activateVirtualenv(environ []string, venv string) []string {
	venvBin := filepath.Join(venv, "bin")
	env := make([]string, 0, len(environ)+2)
	path := venvBin
	for _, kv := range environ {
		key, value, _ := strings.Cut(kv, "=")
		switch key {
		case "PYTHONHOME", "VIRTUAL_ENV":
		case "PATH":
			path = venvBin + string(os.PathListSeparator) + value
		default:
			env = append(env, kv)
		}
	}
	return append(env, "PATH="+path, "VIRTUAL_ENV="+venv)
}

// lookPath is exec.LookPath without Go's refusal of relative PATH entries' results.
func lookPath(name string) (string, error) {
	path, err := exec.LookPath(name)
	if errors.Is(err, exec.ErrDot) {
		err = nil
	}
	return path, err
}

// ambientPython is toolchain.CommandPath: $PULUMI_PYTHON_CMD, else python3, else python, on PATH.
func ambientPython() (string, error) {
	candidates := []string{"python3", "python"}
	if cmd := os.Getenv("PULUMI_PYTHON_CMD"); cmd != "" {
		candidates = []string{cmd}
	}
	for _, candidate := range candidates {
		if found, err := lookPath(candidate); err == nil {
			return found, nil
		}
	}
	quoted := make([]string, len(candidates))
	for i, c := range candidates {
		quoted[i] = `"` + c + `"`
	}
	return "", fmt.Errorf("failed to locate any of [%s] on your PATH. Have you installed Python 3.6 or greater?",
		strings.Join(quoted, " "))
}

// virtualenvError is toolchain.NewVirtualEnvError, word for word, so users get the same
// instructions.
func virtualenvError(option, fullPath string) error {
	message := "doesn't appear to be a virtual environment"
	if _, err := os.Stat(fullPath); os.IsNotExist(err) {
		message = "doesn't exist"
	}
	venvPython := filepath.Join(fullPath, "bin", "python")
	commands := fmt.Sprintf("    1. python3 -m venv %s\n    2. %s -m pip install --upgrade pip setuptools wheel\n"+
		"    3. %s -m pip install -r requirements.txt\n", fullPath, venvPython, venvPython)
	return fmt.Errorf("The 'virtualenv' option in Pulumi.yaml is set to %q, but %q %s; run the following "+
		"commands to create the virtual environment and install dependencies into it:\n\n%s\n\n"+
		"For more information see: https://www.pulumi.com/docs/intro/languages/python/#virtual-environments",
		option, fullPath, message, commands)
}

// writer receives a command's output chunks as they come.
type writer func([]byte)

func (w writer) Write(p []byte) (int, error) {
	w(bytes.Clone(p))
	return len(p), nil
}

// runStreaming runs a command, forwarding its stdout/stderr chunks as they come. It returns the
// exit code and the captured stderr text, for error messages.
func runStreaming(argv []string, cwd string, env []string, out, errw writer) (int, string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = cwd, env
	var captured bytes.Buffer
	var mu sync.Mutex
	cmd.Stdout = out
	cmd.Stderr = writer(func(b []byte) {
		mu.Lock()
		captured.Write(b)
		mu.Unlock()
		errw(b)
	})
	err := cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitCode(), strings.TrimSpace(captured.String()), nil
	}
	if err != nil {
		return 0, "", err
	}
	return 0, strings.TrimSpace(captured.String()), nil
}

// pipToolchain is the `pip` toolchain: an optional virtualenv, else the ambient python3.
type pipToolchain struct {
	virtualenvOption string
	virtualenvPath   string
}

func resolveToolchain(opts pythonOptions) (*pipToolchain, error) {
	toolchain := opts.toolchain
	if toolchain == "auto" {
		// Like the real host: a uv.lock or poetry.lock above the program picks that tool.
		switch {
		case opts.programDir != "" && searchUp(opts.programDir, "uv.lock"):
			toolchain = "uv"
		case opts.programDir != "" && searchUp(opts.programDir, "poetry.lock"):
			toolchain = "poetry"
		default:
			toolchain = "pip"
		}
	}
	if toolchain != "pip" {
		return nil, fmt.Errorf("the %s toolchain is not supported by this pulumi-language-python "+
			"(a pip-only stand-in); set runtime.options.toolchain to pip in Pulumi.yaml", toolchain)
	}
	return &pipToolchain{opts.virtualenv, resolveVirtualenvPath(opts.root, opts.virtualenv)}, nil
}

// command returns the argv and environment to run `python ARGS` in this toolchain; a nil
// environment means the host's own.
func (t *pipToolchain) command(args ...string) ([]string, []string, error) {
	if t.virtualenvPath == "" {
		python, err := ambientPython()
		if err != nil {
			return nil, nil, err
		}
		return append([]string{python}, args...), nil, nil
	}
	python := filepath.Join(t.virtualenvPath, "bin", "python")
	return append([]string{python}, args...), activateVirtualenv(os.Environ(), t.virtualenvPath), nil
}

func (t *pipToolchain) validateVenv() error {
	if t.virtualenvOption != "" && !isVirtualenv(t.virtualenvPath) {
		return virtualenvError(t.virtualenvOption, t.virtualenvPath)
	}
	return nil
}

// ensureVenv creates and fills the virtualenv if it is missing or an empty directory.
func (t *pipToolchain) ensureVenv(cwd string, out, errw writer) error {
	if t.virtualenvOption == "" || isVirtualenv(t.virtualenvPath) {
		return nil
	}
	path := t.virtualenvPath
	st, err := os.Stat(path)
	if err == nil && !st.IsDir() {
		return fmt.Errorf("the 'virtualenv' option in Pulumi.yaml is set to %q but it is not a directory", path)
	}
	if err != nil {
		return t.installDependencies(cwd, out, errw)
	}
	if entries, err := os.ReadDir(path); err == nil && len(entries) == 0 {
		return t.installDependencies(cwd, out, errw)
	}
	return nil
}

// installDependencies is toolchain.InstallDependencies: (re)create the venv, update pip & co,
// then `pip install -r requirements.txt` when there is one, streaming all output.
func (t *pipToolchain) installDependencies(cwd string, out, errw writer) error {
	say := func(message string) { out([]byte(message + "\n")) }
	if venv := t.virtualenvPath; venv != "" {
		say("Creating virtual environment...")
		if !filepath.IsAbs(venv) {
			return fmt.Errorf("virtual environment path must be absolute: %s", venv)
		}
		python, err := ambientPython()
		if err != nil {
			return err
		}
		cmd := exec.Command(python, "-m", "venv", venv)
		output, err := cmd.CombinedOutput()
		if err != nil {
			if len(output) > 0 {
				errw(append(output, '\n'))
			}
			return fmt.Errorf("creating virtual environment at '%s': %w", venv, err)
		}
		say("Finished creating virtual environment")
	}

	pipInstall := func(what string, args ...string) error {
		argv, env, err := t.command(append([]string{"-m", "pip", "install"}, args...)...)
		if err != nil {
			return err
		}
		for attempt := 0; ; attempt++ { // the real host retries transient PyPI hiccups
			code, stderr, err := runStreaming(argv, cwd, env, out, errw)
			if err != nil {
				return fmt.Errorf("%s via '%s': %w", what, strings.Join(argv, " "), err)
			}
			if code == 0 {
				return nil
			}
			if attempt < 2 && strings.Contains(stderr, "because the GET request got Content-Type") {
				errw([]byte(fmt.Sprintf("Retrying (%d/3)...\n", attempt+1)))
				continue
			}
			detail := ""
			if stderr != "" {
				detail = ": " + stderr
			}
			return fmt.Errorf("%s via '%s': exit status %d%s", what, strings.Join(argv, " "), code, detail)
		}
	}

	say("Updating pip, setuptools, and wheel in virtual environment...")
	if err := pipInstall("updating pip, setuptools, and wheel", "--upgrade", "pip", "setuptools", "wheel"); err != nil {
		return err
	}
	say("Finished updating")
	if !isFile(filepath.Join(cwd, "requirements.txt")) {
		return nil
	}
	say("Installing dependencies in virtual environment...")
	if err := pipInstall("installing dependencies", "-r", "requirements.txt"); err != nil {
		return err
	}
	say("Finished installing dependencies")
	return nil
}

// output runs `python ARGS` and returns its stdout.
func (t *pipToolchain) output(args ...string) (string, error) {
	argv, env, err := t.command(args...)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return "", fmt.Errorf("calling `%s`: exit status %d: %s", strings.Join(argv, " "), exitErr.ExitCode(),
			strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return "", fmt.Errorf("calling `%s`: %w", strings.Join(argv, " "), err)
	}
	return stdout.String(), nil
}

type installedPackage struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Location string `json:"location,omitempty"`
}

// listPackages is `pip list --format json` (top-level only unless transitive), names PEP
// 503-normalised.
func (t *pipToolchain) listPackages(transitive bool) ([]installedPackage, error) {
	args := []string{"-m", "pip", "list", "--format", "json"}
	if !transitive {
		args = append(args, "--not-required")
	}
	text, err := t.output(args...)
	if err != nil {
		return nil, err
	}
	var packages []installedPackage
	// pip may print a notice after the JSON; the decoder reads just the JSON value.
	if err := json.NewDecoder(strings.NewReader(text)).Decode(&packages); err != nil {
		return nil, fmt.Errorf("parsing `python %s` output: %w", strings.Join(args, " "), err)
	}
	for i := range packages {
		packages[i].Name = normalizePackageName(packages[i].Name)
	}
	return packages, nil
}

// The script installedDistributions runs in the user's interpreter: importlib.metadata, which
// unlike pip is always there.
const listDistributionsScript = "import json, importlib.metadata as m\n" +
	"print(json.dumps([{'name': d.metadata['Name'], 'version': d.version," +
	" 'location': str(d.locate_file(''))} for d in m.distributions()" +
	" if d.metadata['Name']]))\n"

// installedDistributions lists every installed distribution with the directory it lives in, so
// that a package's pulumi-plugin.json can be found.
func (t *pipToolchain) installedDistributions() ([]installedPackage, error) {
	text, err := t.output("-c", listDistributionsScript)
	if err != nil {
		return nil, err
	}
	var listed []installedPackage
	if err := json.Unmarshal([]byte(text), &listed); err != nil {
		return nil, fmt.Errorf("listing the installed Python packages: %w", err)
	}
	seen := map[string]bool{}
	var result []installedPackage
	for _, dist := range listed {
		dist.Name = normalizePackageName(dist.Name)
		if !seen[dist.Name] { // first on sys.path wins, as for imports
			seen[dist.Name] = true
			result = append(result, dist)
		}
	}
	return result, nil
}

var packageNameSeparators = regexp.MustCompile(`[-_.]+`)

// normalizePackageName is PEP 503: lowercase, runs of -, _ and . become one -.
func normalizePackageName(name string) string {
	return packageNameSeparators.ReplaceAllString(strings.ToLower(name), "-")
}

var pythonVersionPattern = regexp.MustCompile(`^(\d+)\.(\d+)(?:\.(\d+))?(?:(a|b|rc|dev)(\d+))?`)

// parsePythonVersion is toolchain.ParsePythonVersion: "Python 3.11.7" => "3.11.7",
// "3.13.0rc2" => "3.13.0-rc.2".
func parsePythonVersion(text string) (string, error) {
	text = strings.TrimPrefix(strings.TrimSpace(text), "Python ")
	m := pythonVersionPattern.FindStringSubmatch(text)
	if m == nil {
		return "", fmt.Errorf("invalid Python version format: %q", text)
	}
	patch := m[3]
	if patch == "" {
		patch = "0"
	}
	version := m[1] + "." + m[2] + "." + patch
	if m[4] != "" {
		version += map[string]string{"a": "-alpha.", "b": "-beta.", "rc": "-rc.", "dev": "-dev."}[m[4]] + m[5]
	}
	return version, nil
}
