package sim

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"math/bits"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/mlxtrain/mlxtrain/shaders"
)

func init() {
	metal.RegisterCompute(metal.DeviceSim, func() (metal.Compute, error) {
		// The process's accelerator holds every tensor: Go memory, so that
		// tensors dropped without Release are collected as host ones are, and a
		// slice of one keeps its memory alive, as on the host.
		d, err := OpenWith(Options{HeapMemory: true})
		if err != nil {
			return nil, err
		}
		return d, nil
	})
}

// Options configure a simulated device.
type Options struct {
	// Sources holds the .metal files; nil means package shaders.
	Sources fs.FS
	// Common names the file compiled in front of every other one: "common.metal"
	// when Sources is nil, none otherwise unless set.
	Common string
	// Family is the Apple GPU family the device reports (7 when 0).
	Family int
	// HeapMemory puts buffers in Go memory instead of mappings that end at a
	// guard page: no fault on a write past a buffer's end, but no mapping per
	// buffer either (a process has some 65k), and the GC reclaims buffers
	// dropped without Release. MLXTRAIN_DEVICE=sim uses it for tensors.
	HeapMemory bool

	// portableFibers switches lanes to ucontext fibers (what machines other than
	// x86-64 Linux use), so that path is tested here too.
	portableFibers bool
}

// Device is the simulator as a [metal.Compute] device. Launches are recorded by
// Dispatch and run, in order, on a worker goroutine once submitted (by a wait on
// a buffer they use, Flush, Synchronize, or a full batch), as Metal runs command
// buffers: code that reads a result without waiting sees poison, not the result.
type Device struct {
	lib    *library
	common string // the common file's source, compiled in front of added sources

	extraMu sync.Mutex
	extra   map[string]*library // kernels of AddSource's libraries, by name
	added   map[string]string   // AddSource's sources, by library name
	heap    bool                // Options.HeapMemory
	facts   metal.Facts
	pool    *metal.Pool
	seed    maphash.Seed

	mu          sync.Mutex
	idle        *sync.Cond // signalled when outstanding reaches zero
	work        *sync.Cond // signalled when queue grows or the device closes
	pending     []*job     // recorded, not yet submitted
	queue       [][]*job   // submitted batches, for the worker
	outstanding int        // submitted batches not yet run
	writers     map[*metal.Buffer]int
	free        map[int][]deviceMem
	freeBytes   int
	err         error
	closed      bool
}

const (
	batchMax     = 64        // launches per submitted batch
	freeKeep     = 256 << 20 // bytes of freed device memory kept for reuse
	threadgroupB = 32 << 10  // threadgroup memory per group, as on Apple GPUs
)

var (
	defaultOnce sync.Once
	defaultLib  *library
	defaultErr  error
)

// Open returns a simulated device running package shaders. The library is
// built once per process (and cached on disk across processes).
func Open() (*Device, error) { return OpenWith(Options{}) }

// OpenWith returns a simulated device for the given options.
func OpenWith(o Options) (*Device, error) {
	var lib *library
	var err error
	var common []byte
	if o.Sources == nil {
		common, _ = fs.ReadFile(shaders.Sources, "common.metal")
	} else if o.Common != "" {
		common, _ = fs.ReadFile(o.Sources, o.Common)
	}
	if o.Sources == nil {
		defaultOnce.Do(func() { defaultLib, defaultErr = loadLibrary(shaders.Sources, "common.metal") })
		lib, err = defaultLib, defaultErr
	} else {
		var rtFlags []string
		if o.portableFibers {
			rtFlags = append(rtFlags, "-DMLXSIM_UCONTEXT")
		}
		lib, err = loadLibrary(o.Sources, o.Common, rtFlags...)
	}
	if err != nil {
		return nil, err
	}
	fam := o.Family
	if fam == 0 {
		fam = 7
	}
	d := &Device{
		lib:    lib,
		common: string(common),
		extra:  map[string]*library{},
		added:  map[string]string{},
		heap:   o.HeapMemory,
		facts: metal.Facts{
			Name:                 "MSL simulator (" + lib.compile + ")",
			Family:               fam,
			UnifiedMemory:        true,
			WorkingSet:           4 << 30,
			MaxThreadgroupMemory: threadgroupB,
			MaxThreadsPerGroup:   1024,
			SIMDWidth:            32,
			LanguageVersion:      "3.1",
			Simulated:            true,
		},
		pool:    metal.NewPool(0),
		seed:    maphash.MakeSeed(),
		writers: map[*metal.Buffer]int{},
		free:    map[int][]deviceMem{},
	}
	d.idle = sync.NewCond(&d.mu)
	d.work = sync.NewCond(&d.mu)
	go d.worker()
	return d, nil
}

// Kind is metal.DeviceSim.
func (d *Device) Kind() metal.DeviceKind { return metal.DeviceSim }

// Name names the simulator and the compiler that built it.
func (d *Device) Name() string { return d.facts.Name }

// Facts describes the simulated GPU.
func (d *Device) Facts() metal.Facts { return d.facts }

// Errors returns, by file, the shaders that did not build (strict-pass or clang
// errors); their kernels fail to dispatch.
func (d *Device) Errors() map[string]error {
	out := map[string]error{}
	for f, e := range d.lib.b.errs {
		out[f] = e
	}
	return out
}

// Kernels lists the kernels that built, sorted.
func (d *Device) Kernels() []string {
	var names []string
	for n := range d.lib.b.kernels {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Pool counts the device memory in use.
func (d *Device) Pool() *metal.Pool { return d.pool }

// buffer is the simulator's object behind a metal.Buffer.
type buffer struct {
	dev   *Device
	words []uint64
}

// Flush submits the device's recorded launches (metal.Flusher).
func (b *buffer) Flush() { b.dev.Flush() }

func wordsFor(n int) int {
	w := max((n+7)/8, 2)
	if w <= 512 {
		return (w + 31) &^ 31
	}
	hi := bits.Len(uint(w-1)) - 1 // 2^hi < w <= 2^(hi+1)
	step := 1 << (hi - 2)
	return (w + step - 1) / step * step
}

// NewBuffer returns n bytes of device memory. Its contents are NaN (as all bits
// set) until written: a kernel that reads what nobody wrote sees it at once.
func (d *Device) NewBuffer(n int) (*metal.Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("sim: buffer of %d bytes", n)
	}
	w := wordsFor(n)
	d.mu.Lock()
	var m deviceMem
	if l := d.free[w]; len(l) > 0 {
		m = l[len(l)-1]
		d.free[w] = l[:len(l)-1]
		d.freeBytes -= w * 8
	}
	d.mu.Unlock()
	if m.words == nil && d.heap {
		m.words = make([]uint64, w)
	} else if m.words == nil {
		var err error
		if m, err = allocDevice(w); err != nil {
			return nil, err
		}
	}
	for i := range m.words {
		m.words[i] = ^uint64(0)
	}
	h := &buffer{dev: d, words: m.words}
	return d.pool.Wrap(m.words, n, h, func() { d.recycle(m) }), nil
}

func (d *Device) recycle(m deviceMem) {
	d.mu.Lock()
	if !d.closed && d.freeBytes+len(m.words)*8 <= freeKeep {
		d.free[len(m.words)] = append(d.free[len(m.words)], m)
		d.freeBytes += len(m.words) * 8
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	m.free()
}

// job is one recorded launch.
type job struct {
	k      *kernelFn
	lib    *library // k's
	c      cLaunch
	poison [][]byte // Write arguments, filled with NaN before the launch
	checks []check  // arguments that must not change before the launch runs
	keep   []any    // what the launch record points into
	done   []func() // BeginUse completions
	writes []*metal.Buffer
}

// check records a buffer's contents at Dispatch: if the CPU writes it before the
// launch runs, the launch fails (on a Mac the kernel would read the new data, or
// the CPU's write would be lost under the kernel's).
type check struct {
	index int
	mem   []byte
	sum   uint64
}

func (d *Device) fail(k string, format string, args ...any) error {
	return fmt.Errorf("sim: %s: %s", k, fmt.Sprintf(format, args...))
}

// Dispatch checks the launch against the kernel's signature and records it.
func (d *Device) Dispatch(l *metal.Launch) error {
	if err := l.Check(d.facts); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	lib := d.libraryOf(l.Kernel)
	k, err := lib.kernel(l.Kernel)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	j := &job{k: k, lib: lib}
	bound := map[int]*metal.Arg{}
	for i := range l.Args {
		bound[l.Args[i].Index] = &l.Args[i]
	}
	tgParams := map[int]bool{}
	seen := map[*metal.Buffer]metal.Access{}
	type use struct {
		b *metal.Buffer
		h *buffer
	}
	var uses []use
	for _, p := range k.sig.params {
		switch p.attr {
		case "threadgroup":
			tgParams[p.index] = true
			if p.index >= len(l.Shared) || l.Shared[p.index] == 0 {
				return d.fail(l.Kernel, "[[threadgroup(%d)]] %s has no memory (Launch.Shared)", p.index, p.name)
			}
			j.c.tgSize[p.index] = uint64(l.Shared[p.index])
			continue
		case "buffer":
		default:
			continue
		}
		a := bound[p.index]
		if a == nil {
			return d.fail(l.Kernel, "[[buffer(%d)]] %s is not bound", p.index, p.name)
		}
		need := int(k.size(int32(p.index)))
		if a.Bytes != nil {
			if !p.isConst {
				return d.fail(l.Kernel, "[[buffer(%d)]] %s is writable (%s); constant data binds only read-only parameters", p.index, p.name, p.typ)
			}
			if len(a.Bytes) < need {
				return d.fail(l.Kernel, "[[buffer(%d)]] %s: %d bytes of data for a %s of %d bytes", p.index, p.name, len(a.Bytes), p.typ, need)
			}
			mem := append([]byte(nil), a.Bytes...)
			mem = append(mem, make([]byte, 16)...) // never a zero-length allocation
			j.keep = append(j.keep, mem)
			j.c.buf[p.index] = uintptr(unsafe.Pointer(&mem[0]))
			continue
		}
		h, ok := a.Buffer.Handle().(*buffer)
		if !ok || h.dev != d {
			return d.fail(l.Kernel, "[[buffer(%d)]] %s: the buffer is not this simulator's (allocate with its NewBuffer)", p.index, p.name)
		}
		switch {
		case p.isConst && a.Access != metal.Read:
			return d.fail(l.Kernel, "[[buffer(%d)]] %s is read-only (%s) but bound for %s", p.index, p.name, p.typ, a.Access)
		case !p.isConst && a.Access == metal.Read:
			return d.fail(l.Kernel, "[[buffer(%d)]] %s is writable (%s) but bound read-only: declare it const, or bind it Out/InOut", p.index, p.name, p.typ)
		}
		if a.Buffer.Size()-a.Offset < need {
			return d.fail(l.Kernel, "[[buffer(%d)]] %s: %d bytes from offset %d for a %s of %d bytes", p.index, p.name, a.Buffer.Size()-a.Offset, a.Offset, p.typ, need)
		}
		mem := unsafe.Slice((*byte)(unsafe.Pointer(&h.words[0])), a.Buffer.Size())[a.Offset:]
		j.c.buf[p.index] = uintptr(unsafe.Pointer(&h.words[0])) + uintptr(a.Offset)
		if a.Access == metal.Write {
			j.poison = append(j.poison, mem)
		}
		if a.Access != metal.Read {
			j.writes = append(j.writes, a.Buffer)
		}
		j.checks = append(j.checks, check{index: p.index, mem: mem})
		if prev, twice := seen[a.Buffer]; twice {
			if prev == metal.Write || a.Access == metal.Write {
				return d.fail(l.Kernel, "[[buffer(%d)]] %s: its buffer is bound twice and written: the Write binding's poison would be what the other reads (bind it once, InOut)", p.index, p.name)
			}
			continue
		}
		seen[a.Buffer] = a.Access
		uses = append(uses, use{a.Buffer, h})
	}
	for _, a := range l.Args {
		found := false
		for _, p := range k.sig.params {
			found = found || p.attr == "buffer" && p.index == a.Index
		}
		if !found {
			return d.fail(l.Kernel, "buffer %d is bound but the kernel has no [[buffer(%d)]]", a.Index, a.Index)
		}
	}
	for i, n := range l.Shared {
		if n > 0 && !tgParams[i] {
			return d.fail(l.Kernel, "threadgroup memory for index %d, but the kernel has no [[threadgroup(%d)]]", i, i)
		}
	}
	set := map[int]bool{}
	for _, c := range l.Constants {
		fc, ok := k.consts[c.Index]
		if !ok {
			return d.fail(l.Kernel, "function constant %d: %s declares none", c.Index, k.sig.file)
		}
		typ, bits, err := metal.ConstantBits(c)
		if err != nil {
			return d.fail(l.Kernel, "%v", err)
		}
		if typ != fc.typ {
			return d.fail(l.Kernel, "function constant %d (%s) is a %s, given a %s", c.Index, fc.name, fc.typ, typ)
		}
		j.c.fc[c.Index] = bits
		j.c.fcSet |= 1 << c.Index
		set[c.Index] = true
	}
	var missing []string
	for _, fc := range k.consts {
		if k.sig.bodyIdent[fc.name] && !set[fc.index] {
			missing = append(missing, fmt.Sprintf("%s ([[function_constant(%d)]])", fc.name, fc.index))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return d.fail(l.Kernel, "needs function constants %s", strings.Join(missing, ", "))
	}
	if l.Groups[0]*l.Groups[1]*l.Groups[2] == 0 {
		return nil
	}
	for i := 0; i < 3; i++ {
		j.c.groups[i] = uint32(l.Groups[i])
		j.c.threads[i] = uint32(l.Threads[i])
	}
	j.c.tgLimit = threadgroupB

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return d.fail(l.Kernel, "device closed")
	}
	// Contents the launch depends on are fixed now, unless an earlier launch in
	// flight writes them: then the CPU could not have written them legitimately
	// either, but the check would not know what to expect.
	checks := j.checks[:0]
	for _, c := range j.checks {
		if d.writers[bufferAt(l, c.index)] == 0 {
			c.sum = maphash.Bytes(d.seed, c.mem)
			checks = append(checks, c)
		}
	}
	j.checks = checks
	for _, b := range j.writes {
		d.writers[b]++
	}
	for _, u := range uses {
		j.done = append(j.done, u.b.BeginUse())
		j.keep = append(j.keep, u.h)
	}
	d.pending = append(d.pending, j)
	if len(d.pending) >= batchMax {
		d.submitLocked()
	}
	return nil
}

func bufferAt(l *metal.Launch, index int) *metal.Buffer {
	for _, a := range l.Args {
		if a.Index == index {
			return a.Buffer
		}
	}
	return nil
}

func (d *Device) submitLocked() {
	if len(d.pending) == 0 {
		return
	}
	d.queue = append(d.queue, d.pending)
	d.pending = nil
	d.outstanding++
	d.work.Signal()
}

// Flush submits the recorded launches to the worker.
func (d *Device) Flush() {
	d.mu.Lock()
	d.submitLocked()
	d.mu.Unlock()
}

// Synchronize submits and waits for every launch, and returns the first error
// of the work since the last Synchronize.
func (d *Device) Synchronize() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.submitLocked()
	for d.outstanding > 0 {
		d.idle.Wait()
	}
	err := d.err
	d.err = nil
	return err
}

// Close waits for the work in flight, stops the worker and unmaps the memory
// kept for reuse. Buffers still held stay valid until released.
func (d *Device) Close() error {
	err := d.Synchronize()
	d.mu.Lock()
	d.closed = true
	d.work.Broadcast()
	for _, l := range d.free {
		for _, m := range l {
			m.free()
		}
	}
	d.free, d.freeBytes = map[int][]deviceMem{}, 0
	d.mu.Unlock()
	return err
}

func (d *Device) worker() {
	for {
		d.mu.Lock()
		for len(d.queue) == 0 && !d.closed {
			d.work.Wait()
		}
		if len(d.queue) == 0 {
			d.mu.Unlock()
			return
		}
		batch := d.queue[0]
		d.queue = d.queue[1:]
		d.mu.Unlock()
		for _, j := range batch {
			err := d.execute(j)
			d.mu.Lock()
			for _, b := range j.writes {
				if d.writers[b]--; d.writers[b] == 0 {
					delete(d.writers, b)
				}
			}
			if err != nil && d.err == nil {
				d.err = err
			}
			d.mu.Unlock()
			for _, done := range j.done {
				done()
			}
		}
		d.mu.Lock()
		d.outstanding--
		if d.outstanding == 0 {
			d.idle.Broadcast()
		}
		d.mu.Unlock()
	}
}

var errChanged = errors.New("changed between Dispatch and the launch: the CPU wrote it while the launch was in flight (wait for the buffer before writing)")

func (d *Device) execute(j *job) error {
	name := j.k.sig.name
	for _, c := range j.checks {
		if maphash.Bytes(d.seed, c.mem) != c.sum {
			return fmt.Errorf("sim: %s: [[buffer(%d)]] %w", name, c.index, errChanged)
		}
	}
	for _, p := range j.poison {
		for i := range p {
			p[i] = 0xff
		}
	}
	j.lib.run.Lock()
	rc := j.k.launch(unsafe.Pointer(&j.c))
	j.lib.run.Unlock()
	if rc != 0 {
		return fmt.Errorf("sim: %s", j.c.message())
	}
	return nil
}
