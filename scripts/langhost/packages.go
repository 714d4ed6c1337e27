package main

// Required packages: which resource plugins the installed Python packages need
// (determinePackageDependency and determinePluginVersion in the real host).

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// Python packages that start with "pulumi" but have no resource plugin (the real host's list).
var packagesWithoutPlugins = map[string]bool{"pulumi-policy": true, "pulumi-esc-sdk": true}

type parameterization struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Value   []byte `json:"value"` // base64 in JSON, like Go's []byte
}

// pulumiPluginJSON is a package's pulumi-plugin.json.
type pulumiPluginJSON struct {
	Resource                  bool              `json:"resource"`
	Name                      string            `json:"name"`
	Version                   string            `json:"version"`
	Server                    string            `json:"server"`
	Parameterization          *parameterization `json:"parameterization"`
	ExtensionParameterization *parameterization `json:"extensionParameterization"`
}

// readPulumiPluginJSON returns nil, nil when the package has no pulumi-plugin.json.
func readPulumiPluginJSON(dist installedPackage) (*pulumiPluginJSON, error) {
	module := strings.ReplaceAll(dist.Name, "-", "_")
	path := filepath.Join(dist.Location, module, "pulumi-plugin.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var plugin pulumiPluginJSON
	if err := json.Unmarshal(data, &plugin); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return &plugin, nil
}

var pep440Pattern = regexp.MustCompile(`^(\d+(?:\.\d+)*)(?:(a|b|rc)(\d*))?(?:\.post(\d*))?(?:\.dev(\d*))?$`)

// pluginVersionFromPackageVersion is determinePluginVersion: PEP 440
// `N(.N)*[{a|b|rc}N][.postN][.devN]` to semver, padding to three segments: 1.2.3a4 =>
// 1.2.3-alpha.4, 1.2.3.post4.dev5 => 1.2.3+post4dev5. False when it cannot be translated
// (epochs, local versions, anything else left over).
func pluginVersionFromPackageVersion(version string) (string, bool) {
	m := pep440Pattern.FindStringSubmatchIndex(version)
	if m == nil {
		return "", false
	}
	group := func(i int) (string, bool) {
		if m[2*i] < 0 {
			return "", false
		}
		return version[m[2*i]:m[2*i+1]], true
	}
	release, _ := group(1)
	segments := strings.Split(release, ".")
	for len(segments) < 3 {
		segments = append(segments, "0")
	}
	result := strings.Join(segments, ".")
	if pre, ok := group(2); ok {
		num, _ := group(3)
		result += map[string]string{"a": "-alpha.", "b": "-beta.", "rc": "-rc."}[pre] + num
	}
	post, hasPost := group(4)
	if hasPost {
		result += "+post" + post
	}
	if dev, ok := group(5); ok {
		if !hasPost {
			result += "+"
		}
		result += "dev" + dev
	}
	return result, true
}

func toParameterization(p *parameterization) *pulumirpc.PackageParameterization {
	if p == nil || (p.Name == "" && p.Version == "" && len(p.Value) == 0) {
		return nil
	}
	return &pulumirpc.PackageParameterization{Name: p.Name, Version: p.Version, Value: p.Value}
}

// packageDependency is determinePackageDependency: the resource plugin a Pulumi Python package
// needs, from its pulumi-plugin.json where present, else derived from the package's own name and
// version. Nil when it needs none.
func packageDependency(dist installedPackage, plugin *pulumiPluginJSON) *pulumirpc.PackageDependency {
	dependency := &pulumirpc.PackageDependency{Kind: "resource"}
	if plugin != nil {
		if !plugin.Resource {
			return nil // the package says it has no plugin
		}
		dependency.Name, dependency.Version, dependency.Server = plugin.Name, plugin.Version, plugin.Server
		dependency.Parameterization = toParameterization(plugin.Parameterization)
		dependency.Extension = toParameterization(plugin.ExtensionParameterization)
	}
	if dependency.Name == "" {
		dependency.Name = strings.TrimPrefix(dist.Name, "pulumi-")
	}
	if dependency.Version == "" {
		version, ok := pluginVersionFromPackageVersion(dist.Version)
		if !ok {
			logf(5, "could not determine plugin version for %s %s", dist.Name, dist.Version)
			return nil
		}
		dependency.Version = version
	}
	if !strings.HasPrefix(dependency.Version, "v") {
		dependency.Version = "v" + dependency.Version
	}
	return dependency
}

func requiredPackages(distributions []installedPackage) ([]*pulumirpc.PackageDependency, error) {
	var packages []*pulumirpc.PackageDependency
	for _, dist := range distributions {
		plugin, err := readPulumiPluginJSON(dist)
		if err != nil {
			return nil, err
		}
		isPulumi := plugin != nil || strings.HasPrefix(dist.Name, "pulumi-")
		if !isPulumi || packagesWithoutPlugins[dist.Name] {
			continue
		}
		if dependency := packageDependency(dist, plugin); dependency != nil {
			packages = append(packages, dependency)
		}
	}
	return packages, nil
}
