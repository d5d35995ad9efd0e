// Package layering keeps the package table of DESIGN.md true: each package imports
// only the packages below it.
package layering

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/mlxtrain/mlxtrain"

// allowed lists, for each top-level package, the top-level packages of ours it may
// import (subpackages count as their top-level package). From DESIGN.md.
var allowed = map[string][]string{
	"cmd":         {"*"},
	"internal":    {"*"},
	"vecmath":     {},
	"recipes":     {"generate", "models", "layers", "attention", "advanced", "quant", "optim", "checkpoints", "data", "autodiff", "metal", "shaders"},
	"generate":    {"models", "layers", "attention", "advanced", "quant", "optim", "checkpoints", "data", "autodiff", "metal", "shaders"},
	"models":      {"layers", "attention", "advanced", "quant", "autodiff", "metal", "shaders"},
	"advanced":    {"layers", "autodiff", "metal", "shaders"},
	"attention":   {"layers", "autodiff", "metal", "shaders"},
	"quant":       {"layers", "autodiff", "metal", "shaders"},
	"layers":      {"autodiff", "metal", "shaders"},
	"optim":       {"autodiff", "metal", "shaders"},
	"checkpoints": {"autodiff", "metal", "shaders"},
	"data":        {},
	"autodiff":    {"metal", "shaders"},
	"metal":       {"shaders"},
	"shaders":     {},
}

func top(pkg string) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
	if rel == "" {
		return ""
	}
	// internal/vecmath, the shared row kernels, sits below every layer.
	if rel == "internal/vecmath" || rel == "internal/vecmath_test" {
		return "vecmath"
	}
	// An external test package (data_test) belongs to its package (data).
	return strings.TrimSuffix(strings.SplitN(rel, "/", 2)[0], "_test")
}

func TestImportsFollowTheLayering(t *testing.T) {
	for _, goos := range []string{"linux", "darwin"} {
		cmd := exec.Command("go", "list", "-test", "-json", module+"/...")
		cmd.Dir = "../.."
		cmd.Env = append(cmd.Environ(), "GOOS="+goos, "GOARCH=arm64", "CGO_ENABLED=0")
		out, err := cmd.Output()
		require.NoError(t, err, "go list")
		dec := json.NewDecoder(strings.NewReader(string(out)))
		checked := 0
		for dec.More() {
			var p struct {
				ImportPath string
				Imports    []string
			}
			require.NoError(t, dec.Decode(&p))
			path, _, _ := strings.Cut(p.ImportPath, " ")
			if strings.HasSuffix(path, ".test") {
				continue // the generated test main
			}
			from := top(strings.TrimSuffix(path, "_test")) // an external test package belongs to its package
			rule, known := allowed[from]
			require.True(t, known, "package %s is not in DESIGN.md's table", p.ImportPath)
			if len(rule) == 1 && rule[0] == "*" {
				continue
			}
			for _, imp := range p.Imports {
				if !strings.HasPrefix(imp, module+"/") {
					continue
				}
				to := top(imp)
				if to == from {
					continue
				}
				ok := to == "vecmath" // every layer may use the shared row kernels
				for _, a := range rule {
					ok = ok || a == to
				}
				// A package's external tests (package x_test) and examples may use
				// layers above it: an example of layers may train with optim.
				// Test builds of a package (its " [x.test]" variant) may too: tests
				// compare against references that live above it.
				isXTest := strings.HasSuffix(path, "_test") || strings.Contains(p.ImportPath, " [")
				if !ok && !isXTest {
					t.Errorf("%s (%s) imports %s: %s may import only %v", p.ImportPath, goos, imp, from, rule)
				}
			}
			checked++
		}
		require.Greater(t, checked, 10, "go list found too few packages")
	}
}
