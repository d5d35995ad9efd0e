package metal

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Path names the kind of implementation an op ran on; profiles and
// `mlxtrain devices` report it.
type Path uint8

// The paths of the fallback chain, fastest first.
const (
	PathMetal     Path = iota // a Metal kernel (or the simulator running it)
	PathBLAS                  // the system BLAS through purego
	PathAsm                   // hand-written SIMD assembly
	PathGo                    // goroutine-parallel Go
	PathReference             // the simple reference implementation
)

func (p Path) String() string {
	switch p {
	case PathMetal:
		return "metal"
	case PathBLAS:
		return "blas"
	case PathAsm:
		return "asm"
	case PathGo:
		return "go"
	case PathReference:
		return "reference"
	}
	return fmt.Sprintf("path(%d)", uint8(p))
}

// Impl is one implementation of an op.
type Impl struct {
	Path Path
	// Min holds a threshold per dimension of the op (Op.Dims): the implementation
	// applies only when every reported size is at least its minimum. Each is
	// overridable by MLXTRAIN_<OP>_MIN_<DIM>_<PATH> or, for every path at once,
	// MLXTRAIN_<OP>_MIN_<DIM>.
	Min []int
	// Available says whether the implementation can run at all on this machine
	// (library found, device present). Asked once, at first use.
	Available func() bool
	// Fn is the kernel; its type is the op owner's business.
	Fn any
	// Tuning, for a device implementation, holds its thresholds by GPU family;
	// they replace Min at first use for every dim no environment variable set.
	Tuning Tuning
	// SelfTest, for a device implementation, runs it once on small shapes
	// against the CPU path, at first use (after Available). An error (or a
	// panic) disables the implementation with a one-line warning.
	SelfTest func() error

	availOnce sync.Once
	testOnce  sync.Once
	avail     bool
	fixed     []bool // dims whose threshold an environment variable set
	disabled  string // why a self-test or the user turned it off
	tested    string // the self-test's outcome: "", "passed" or the failure
}

// Op is a named operation with its implementations in order of preference.
type Op struct {
	Name  string
	Dims  []string
	Impls []*Impl
	mu    sync.Mutex
}

// available asks once whether the implementation can run here, and applies its
// tuning table for the device's GPU family.
func (i *Impl) available() bool {
	i.availOnce.Do(func() {
		i.avail = i.Available == nil || i.Available()
		if !i.avail || i.Tuning == nil {
			return
		}
		if d := acceleratorOrNil(); d != nil {
			mins := i.Tuning.For(d.Facts().Family)
			for k := range i.Min {
				if k < len(mins) && !i.fixed[k] {
					i.Min[k] = mins[k]
				}
			}
		}
	})
	return i.avail
}

// usable reports whether Pick may choose the implementation: available, its
// self-test (run at the first call) passed, not disabled.
func (o *Op) usable(i *Impl) bool {
	if !i.available() {
		return false
	}
	if i.SelfTest != nil {
		i.testOnce.Do(func() {
			err := runSelfTest(i.SelfTest)
			o.mu.Lock()
			defer o.mu.Unlock()
			if err != nil {
				i.tested = err.Error()
				i.disabled = "self-test failed: " + err.Error()
				Warnf("%s: the %s kernel failed its self-test and is disabled (%v); the CPU runs the op", o.Name, i.Path, err)
				return
			}
			i.tested = "passed"
		})
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return i.disabled == ""
}

// runSelfTest runs a self-test, turning a panic into an error. The ops it
// runs are not profiled (they are not the program's work).
func runSelfTest(f func() error) (err error) {
	selfTesting.Add(1)
	defer selfTesting.Add(-1)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

// Pick returns the first usable implementation whose thresholds the sizes meet.
// sizes follow Op.Dims. The last implementation (the reference) always applies.
func (o *Op) Pick(sizes ...int) *Impl {
	for _, im := range o.Impls {
		if !o.usable(im) {
			continue
		}
		ok := true
		for d, m := range im.Min {
			if d < len(sizes) && sizes[d] < m {
				ok = false
				break
			}
		}
		if ok {
			return im
		}
	}
	return o.Impls[len(o.Impls)-1]
}

// Disable turns an implementation off with a reason (a failed self-test, a user's
// choice); Pick passes over it from then on.
func (o *Op) Disable(p Path, why string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, im := range o.Impls {
		if im.Path == p {
			im.disabled = why
		}
	}
}

// DisableDevice disables the device implementation of every op.
func (r *Registry) DisableDevice(why string) {
	r.mu.Lock()
	ops := make([]*Op, 0, len(r.ops))
	for _, o := range r.ops {
		ops = append(ops, o)
	}
	r.mu.Unlock()
	for _, o := range ops {
		o.Disable(PathMetal, why)
	}
}

// Registry maps op names to their implementations. Packages register their kernels
// with explicit calls at init; [Kernels] is the process's registry.
type Registry struct {
	mu  sync.Mutex
	ops map[string]*Op
}

// Kernels is the registry of every op in the process.
var Kernels = &Registry{ops: map[string]*Op{}}

// Register adds an op. Implementations come fastest first and the last must be
// the reference (no thresholds, always available). Thresholds are then read from
// the environment; a malformed override panics at init, naming the variable.
func (r *Registry) Register(name string, dims []string, impls ...*Impl) *Op {
	if len(impls) == 0 {
		panic("metal: op " + name + " registered without implementations")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ops == nil { // the zero Registry is ready to use
		r.ops = map[string]*Op{}
	}
	if _, dup := r.ops[name]; dup {
		panic("metal: op " + name + " registered twice")
	}
	for _, im := range impls {
		if len(im.Min) > len(dims) {
			panic(fmt.Sprintf("metal: op %s: %d thresholds for %d dims", name, len(im.Min), len(dims)))
		}
		if len(im.Min) < len(dims) {
			im.Min = append(im.Min, make([]int, len(dims)-len(im.Min))...)
		}
		im.fixed = make([]bool, len(dims))
		for d, dim := range dims {
			keys := []string{envName(name, dim) + "_" + strings.ToUpper(im.Path.String()), envName(name, dim)}
			if im.Path == PathMetal {
				keys = append(keys, metalMinEnv)
			}
			for _, key := range keys {
				if v, ok := os.LookupEnv(key); ok {
					n, err := strconv.Atoi(v)
					if err != nil || n < 0 {
						panic(fmt.Sprintf("metal: %s=%q: want a whole number ≥ 0", key, v))
					}
					im.Min[d] = n
					im.fixed[d] = true
					break
				}
			}
		}
	}
	op := &Op{Name: name, Dims: dims, Impls: impls}
	r.ops[name] = op
	return op
}

func envName(op, dim string) string {
	clean := func(s string) string {
		return strings.Map(func(c rune) rune {
			if c >= 'a' && c <= 'z' {
				return c - 'a' + 'A'
			}
			if c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
				return c
			}
			return '_'
		}, s)
	}
	return "MLXTRAIN_" + clean(op) + "_MIN_" + clean(dim)
}

// Op returns a registered op, or nil.
func (r *Registry) Op(name string) *Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ops[name]
}

// OpInfo describes an op for `mlxtrain devices`.
type OpInfo struct {
	Name  string
	Dims  []string
	Impls []ImplInfo
}

// ImplInfo describes one implementation.
type ImplInfo struct {
	Path      Path
	Min       []int
	Available bool
	Disabled  string
	// SelfTest is "" when the implementation has none or it has not run yet,
	// "passed", or why it failed.
	SelfTest string
}

// List describes every op, sorted by name.
func (r *Registry) List() []OpInfo {
	r.mu.Lock()
	ops := make([]*Op, 0, len(r.ops))
	for _, o := range r.ops {
		ops = append(ops, o)
	}
	r.mu.Unlock()
	sort.Slice(ops, func(i, j int) bool { return ops[i].Name < ops[j].Name })
	out := make([]OpInfo, 0, len(ops))
	for _, o := range ops {
		info := OpInfo{Name: o.Name, Dims: o.Dims}
		for _, im := range o.Impls {
			im.available()
			o.mu.Lock()
			info.Impls = append(info.Impls, ImplInfo{Path: im.Path, Min: append([]int(nil), im.Min...), Available: im.avail, Disabled: im.disabled, SelfTest: im.tested})
			o.mu.Unlock()
		}
		out = append(out, info)
	}
	return out
}

// SelfTest runs the self-test of every available implementation that has one
// and has not run it yet (they otherwise run at an op's first use), and returns
// the registry's description afterwards.
func (r *Registry) SelfTest() []OpInfo {
	r.mu.Lock()
	ops := make([]*Op, 0, len(r.ops))
	for _, o := range r.ops {
		ops = append(ops, o)
	}
	r.mu.Unlock()
	sort.Slice(ops, func(i, j int) bool { return ops[i].Name < ops[j].Name })
	for _, o := range ops {
		for _, im := range o.Impls {
			o.usable(im)
		}
	}
	return r.List()
}
