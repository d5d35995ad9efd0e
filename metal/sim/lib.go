package sim

import (
	"fmt"
	"io/fs"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// cLaunch mirrors mlxsim::Launch (csrc/msl_shim.h); the library checks the size.
type cLaunch struct {
	buf     [32]uintptr // [[buffer(i)]] addresses
	tg      [32]uintptr // set by the runtime
	tgSize  [32]uint64  // [[threadgroup(i)]] bytes
	fc      [64]uint64  // function constants by index
	fcSet   uint64      // bit i: constant i is set
	groups  [3]uint32
	threads [3]uint32
	tgLimit uint32
	_       uint32
	err     [1024]byte
}

func (l *cLaunch) message() string {
	n := 0
	for n < len(l.err) && l.err[n] != 0 {
		n++
	}
	return string(l.err[:n])
}

// kernelFn is a compiled kernel: its launcher and the sizes of its reference
// arguments (0 for pointers).
type kernelFn struct {
	sig    *kernelSig
	consts map[int]funcConst
	launch func(unsafe.Pointer) int32
	size   func(int32) uint64
}

// library is a built and loaded set of shaders. Launches into one library run
// one at a time (the runtime's scheduler state is global in it).
type library struct {
	run     sync.Mutex
	handle  uintptr
	b       *built
	compile string // the compiler that built it

	mu  sync.Mutex
	fns map[string]*kernelFn
}

var (
	libsMu sync.Mutex
	libs   = map[string]*library{} // by shared-library path
)

// loadLibrary builds (or finds in the cache) and loads the library of sources.
func loadLibrary(sources fs.FS, common string, rtFlags ...string) (*library, error) {
	b, err := build(sources, common, rtFlags...)
	if err != nil {
		return nil, err
	}
	libsMu.Lock()
	defer libsMu.Unlock()
	if b.lib == "" {
		return &library{b: b, fns: map[string]*kernelFn{}}, nil
	}
	if l := libs[b.lib]; l != nil {
		return l, nil
	}
	h, err := purego.Dlopen(b.lib, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("sim: load %s: %w", b.lib, err)
	}
	sym, err := purego.Dlsym(h, "mlxsim_launch_size")
	if err != nil {
		return nil, fmt.Errorf("sim: %s: %w", b.lib, err)
	}
	var size func() uint64
	purego.RegisterFunc(&size, sym)
	if got, want := size(), uint64(unsafe.Sizeof(cLaunch{})); got != want {
		return nil, fmt.Errorf("sim: %s: launch record of %d bytes, Go has %d", b.lib, got, want)
	}
	c, _ := FindCompiler()
	l := &library{handle: h, b: b, compile: c.Version, fns: map[string]*kernelFn{}}
	libs[b.lib] = l
	return l, nil
}

// kernel returns the named kernel, resolving its symbols at first use.
func (l *library) kernel(name string) (*kernelFn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if k := l.fns[name]; k != nil {
		return k, nil
	}
	sig := l.b.kernels[name]
	if sig == nil {
		if file, ok := l.b.kernelFile[name]; ok && l.b.errs[file] != nil {
			return nil, fmt.Errorf("kernel %s: %w", name, l.b.errs[file])
		}
		return nil, fmt.Errorf("no kernel %s", name)
	}
	k := &kernelFn{sig: sig, consts: map[int]funcConst{}}
	for _, c := range l.b.units[sig.file].consts {
		k.consts[c.index] = c
	}
	sym, err := purego.Dlsym(l.handle, "mlxsim_k_"+name)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", name, err)
	}
	purego.RegisterFunc(&k.launch, sym)
	sym, err = purego.Dlsym(l.handle, "mlxsim_sz_"+name)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", name, err)
	}
	purego.RegisterFunc(&k.size, sym)
	l.fns[name] = k
	return k, nil
}
