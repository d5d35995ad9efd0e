package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed csrc/msl_shim.h
var shimHeader string

//go:embed csrc/msl_runtime.cpp
var runtimeSource string

// generatorVersion changes whenever the generated C++ changes shape, so cached
// libraries from an older simulator are not reused.
const generatorVersion = "mlxsim-1"

// The headers a shader may include, all standing for the shim.
var shimNames = []string{"metal_stdlib", "metal_math", "metal_simdgroup", "metal_simdgroup_matrix",
	"metal_atomic", "metal_compute", "metal_integer", "metal_common", "metal_relational", "metal_geometric"}

var cxxFlags = []string{"-std=c++20", "-O2", "-fPIC", "-fno-exceptions", "-fno-rtti", "-fno-threadsafe-statics",
	"-ffp-contract=off", "-fvisibility=hidden", "-Wall", "-Wno-unused-variable", "-Wno-unused-function",
	"-Wno-unused-but-set-variable", "-Werror=unknown-attributes", "-Werror=return-type",
	"-Werror=uninitialized", "-Werror=sometimes-uninitialized", "-Werror=array-bounds"}

// Compiler is a clang able to build the simulator: version 16 or later (for
// _Float16 on x86-64).
type Compiler struct {
	Path    string
	Version string // the first line of `clang --version`
	Major   int
}

var (
	compilerOnce sync.Once
	compiler     *Compiler
	compilerErr  error
)

var clangVersion = regexp.MustCompile(`clang version (\d+)\.`)

// FindCompiler locates clang: $MLXTRAIN_CLANG, else clang-16 or clang on the PATH
// (the first of version 16 or later). The answer is cached for the process.
func FindCompiler() (*Compiler, error) {
	compilerOnce.Do(func() {
		var tried []string
		cands := []string{"clang-16", "clang-17", "clang-18", "clang-19", "clang-20", "clang"}
		if c := os.Getenv("MLXTRAIN_CLANG"); c != "" {
			cands = []string{c}
		}
		for _, c := range cands {
			p, err := exec.LookPath(c)
			if err != nil {
				tried = append(tried, c+": not found")
				continue
			}
			out, err := exec.Command(p, "--version").Output()
			if err != nil {
				tried = append(tried, fmt.Sprintf("%s: %v", p, err))
				continue
			}
			m := clangVersion.FindSubmatch(out)
			if m == nil {
				tried = append(tried, p+": not clang")
				continue
			}
			major, _ := strconv.Atoi(string(m[1]))
			if major < 16 {
				tried = append(tried, fmt.Sprintf("%s: version %d, need 16 or later", p, major))
				continue
			}
			first, _, _ := strings.Cut(string(out), "\n")
			compiler = &Compiler{Path: p, Version: strings.TrimSpace(first), Major: major}
			return
		}
		compilerErr = fmt.Errorf("sim: no clang ≥ 16 to compile the shaders (%s); install clang-16 or set MLXTRAIN_CLANG", strings.Join(tried, "; "))
	})
	return compiler, compilerErr
}

// CacheDir is where compiled simulator libraries are kept, keyed by a hash of
// everything that goes into them: $MLXTRAIN_SIM_CACHE, else the user cache
// directory, else the temporary directory. Never inside the repository.
func CacheDir() string {
	if d := os.Getenv("MLXTRAIN_SIM_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "mlxtrain", "msl-sim")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("mlxtrain-msl-sim-%d", os.Getuid()))
}

// built is the outcome of building a set of sources.
type built struct {
	lib     string                // the shared library's path, "" when nothing compiled
	kernels map[string]*kernelSig // by name, from the files that compiled
	units   map[string]*unit      // by file
	errs    map[string]error      // by file: the files that failed
	// kernelFile maps every kernel name seen (even in files that failed) to its file.
	kernelFile map[string]string
}

var kernelDecl = regexp.MustCompile(`\bkernel\s+void\s+([A-Za-z_][A-Za-z0-9_]*)`)

func hashOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// writeAtomic writes data to name through a temporary file and a rename, so a
// concurrent reader sees the whole file or none.
func writeAtomic(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), name)
}

// exists reports whether name exists, and marks it used (for pruneCache).
func exists(name string) bool {
	if _, err := os.Stat(name); err != nil {
		return false
	}
	now := time.Now()
	_ = os.Chtimes(name, now, now)
	return true
}

// cacheMaxAge is how long a cached object or library lives without being used.
const cacheMaxAge = 14 * 24 * time.Hour

var pruneOnce sync.Once

// pruneCache removes what no build has used for cacheMaxAge (once per process).
func pruneCache(dir string) {
	pruneOnce.Do(func() {
		old := time.Now().Add(-cacheMaxAge)
		for _, pattern := range []string{"lib-*.so", "obj/*.o", "obj/.*", "include-*", ".tmp-*"} {
			matches, _ := filepath.Glob(filepath.Join(dir, pattern))
			for _, m := range matches {
				if fi, err := os.Stat(m); err == nil && fi.ModTime().Before(old) {
					os.RemoveAll(m)
				}
			}
		}
	})
}

// compile runs clang on C++ source into the object file obj (skipped when cached).
func compile(c *Compiler, incDir, obj, name, src string, extra ...string) error {
	if exists(obj) {
		return nil
	}
	dir := filepath.Dir(obj)
	srcFile, err := os.CreateTemp(dir, ".src-*.cpp")
	if err != nil {
		return err
	}
	defer os.Remove(srcFile.Name())
	if _, err := srcFile.WriteString(src); err != nil {
		srcFile.Close()
		return err
	}
	srcFile.Close()
	tmp := obj + fmt.Sprintf(".%d.tmp", os.Getpid())
	args := append(append(append([]string{}, cxxFlags...), extra...), "-I", incDir, "-c", srcFile.Name(), "-o", tmp)
	cmd := exec.CommandContext(context.Background(), c.Path, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		msg := strings.ReplaceAll(stderr.String(), srcFile.Name(), name)
		return fmt.Errorf("clang: %v\n%s", err, strings.TrimSpace(msg))
	}
	return os.Rename(tmp, obj)
}

// build turns the .metal files of sources into one shared library. common names
// the file compiled in front of every other one ("" for none). A file that fails
// the source pass or clang is left out and reported in errs.
// rtFlags are extra flags for the runtime alone (-DMLXSIM_UCONTEXT selects the
// portable fibers that other architectures use).
func build(sources fs.FS, common string, rtFlags ...string) (*built, error) {
	c, err := FindCompiler()
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(sources, "*.metal")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	b := &built{kernels: map[string]*kernelSig{}, units: map[string]*unit{}, errs: map[string]error{}, kernelFile: map[string]string{}}
	var commonUnit *unit
	if common != "" {
		src, err := fs.ReadFile(sources, common)
		if err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
		commonUnit, err = process(common, string(src))
		if err != nil {
			return nil, fmt.Errorf("sim: the shared file: %w", err)
		}
		if len(commonUnit.kernels) > 0 {
			return nil, fmt.Errorf("sim: %s holds kernels; it is compiled into every file, so it may hold only helpers", common)
		}
	}
	var tus []struct{ file, text string }
	for _, name := range names {
		if name == common {
			continue
		}
		src, err := fs.ReadFile(sources, name)
		if err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
		for _, m := range kernelDecl.FindAllStringSubmatch(string(src), -1) {
			if _, seen := b.kernelFile[m[1]]; !seen {
				b.kernelFile[m[1]] = name
			}
		}
		u, err := process(name, string(src))
		if err != nil {
			b.errs[name] = err
			continue
		}
		if commonUnit != nil {
			u.consts = append(append([]funcConst{}, commonUnit.consts...), u.consts...)
		}
		for _, k := range u.kernels {
			if prev, dup := b.kernels[k.name]; dup {
				b.errs[name] = fmt.Errorf("%s:%d: kernel %s is also defined in %s", name, k.line, k.name, prev.file)
				continue
			}
		}
		if b.errs[name] != nil {
			continue
		}
		for _, k := range u.kernels {
			b.kernels[k.name] = k
		}
		b.units[name] = u
		tus = append(tus, struct{ file, text string }{name, translationUnit(commonUnit, u)})
	}

	dir := CacheDir()
	pruneCache(dir)
	objDir := filepath.Join(dir, "obj")
	incDir := filepath.Join(dir, "include-"+hashOf(generatorVersion, shimHeader)[:16])
	if err := os.MkdirAll(objDir, 0o755); err != nil {
		return nil, fmt.Errorf("sim: cache: %w", err)
	}
	if !exists(filepath.Join(incDir, "msl_shim.h")) {
		if err := os.MkdirAll(incDir, 0o755); err != nil {
			return nil, fmt.Errorf("sim: cache: %w", err)
		}
		for _, n := range shimNames {
			if err := writeAtomic(filepath.Join(incDir, n), []byte("#include \"msl_shim.h\"\n")); err != nil {
				return nil, fmt.Errorf("sim: cache: %w", err)
			}
		}
		if err := writeAtomic(filepath.Join(incDir, "msl_shim.h"), []byte(shimHeader)); err != nil {
			return nil, fmt.Errorf("sim: cache: %w", err)
		}
	}
	exists(incDir) // mark used
	flags := strings.Join(cxxFlags, " ")
	rtObj := filepath.Join(objDir, "rt-"+hashOf(generatorVersion, c.Version, c.Path, flags, strings.Join(rtFlags, " "), runtimeSource)+".o")
	objs := make([]string, len(tus))
	errs := make([]error, len(tus))
	sem := make(chan struct{}, max(runtime.GOMAXPROCS(0), 1))
	var wg sync.WaitGroup
	var rtErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		sem <- struct{}{}
		defer func() { <-sem }()
		rtErr = compile(c, incDir, rtObj, "msl_runtime.cpp", runtimeSource, append([]string{"-Wno-unused-parameter"}, rtFlags...)...)
	}()
	for i, tu := range tus {
		objs[i] = filepath.Join(objDir, "k-"+hashOf(generatorVersion, c.Version, c.Path, flags, shimHeader, tu.text)+".o")
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = compile(c, incDir, objs[i], tu.file, tu.text)
		}()
	}
	wg.Wait()
	if rtErr != nil {
		return nil, fmt.Errorf("sim: the runtime does not compile: %w", rtErr)
	}
	var good []string
	for i, tu := range tus {
		if errs[i] != nil {
			b.errs[tu.file] = fmt.Errorf("%s: %w", tu.file, errs[i])
			for _, k := range b.units[tu.file].kernels {
				delete(b.kernels, k.name)
			}
			delete(b.units, tu.file)
			continue
		}
		good = append(good, objs[i])
	}
	if len(good) == 0 {
		return b, nil
	}
	b.lib = filepath.Join(dir, "lib-"+hashOf(append([]string{generatorVersion, rtObj}, good...)...)+".so")
	if !exists(b.lib) {
		tmp := b.lib + fmt.Sprintf(".%d.tmp", os.Getpid())
		args := append([]string{"-shared", "-o", tmp, rtObj}, good...)
		args = append(args, "-lm")
		cmd := exec.Command(c.Path, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("sim: link: %v\n%s", err, strings.TrimSpace(stderr.String()))
		}
		if err := os.Rename(tmp, b.lib); err != nil {
			return nil, fmt.Errorf("sim: cache: %w", err)
		}
	}
	return b, nil
}
