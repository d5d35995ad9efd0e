//go:build darwin

package mtl

import (
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego/objc"

	"github.com/mlxtrain/mlxtrain/metal"
	"github.com/mlxtrain/mlxtrain/shaders"
)

func init() {
	metal.RegisterCompute(metal.DeviceMetal, func() (metal.Compute, error) {
		d, err := Open()
		if err != nil {
			return nil, err
		}
		return d, nil
	})
}

const (
	batchMax = 64        // launches per command buffer before it is committed
	freeKeep = 512 << 20 // bytes of freed MTLBuffers kept for reuse
)

// Options configure a Metal device.
type Options struct {
	// Sources holds the .metal files; nil means package shaders.
	Sources fs.FS
	// Common names the file compiled in front of every other one: "common.metal"
	// when Sources is nil, none otherwise unless set.
	Common string
}

// Device is the system's Metal GPU as a [metal.Compute] device.
type Device struct {
	thread *osThread
	dev    objc.ID // id<MTLDevice>
	queue  objc.ID // id<MTLCommandQueue>
	facts  metal.Facts
	pool   *metal.Pool

	libs    map[string]objc.ID // kernel name → id<MTLLibrary> (not owned per entry)
	owned   []objc.ID          // the libraries
	errs    map[string]error   // by file: the files that did not compile
	kernelF map[string]string  // kernel name → file, for every kernel seen
	prefix  string             // the common file, compiled in front of every file
	added   map[string]string  // AddSource's sources by name; Metal thread only

	pipes map[string]*pipeline // by metal.Launch.PipelineKey; Metal thread only

	// the open batch (command buffer and encoder retained); Metal thread only
	cb, enc  objc.ID
	batchN   int
	batchEnd []func()

	mu          sync.Mutex
	idle        *sync.Cond
	outstanding int // committed command buffers not yet complete
	err         error
	free        map[int][]freeBuffer
	freeBytes   int
}

type pipeline struct {
	pso        objc.ID
	maxThreads int
}

type freeBuffer struct {
	buf   objc.ID
	words []uint64
}

// buffer is the Metal object behind a metal.Buffer.
type buffer struct {
	dev *Device
	buf objc.ID // id<MTLBuffer>
}

// Flush commits the device's open command buffer (metal.Flusher).
func (b *buffer) Flush() { b.dev.Flush() }

// Open returns the system default Metal device running package shaders.
func Open() (*Device, error) { return OpenWith(Options{}) }

// OpenWith returns the system default Metal device running the given shaders.
func OpenWith(o Options) (*Device, error) {
	if err := load(); err != nil {
		return nil, err
	}
	sources, common := o.Sources, o.Common
	if sources == nil {
		sources, common = shaders.Sources, "common.metal"
	}
	d := &Device{
		thread:  newOSThread(),
		pool:    metal.NewPool(0),
		libs:    map[string]objc.ID{},
		errs:    map[string]error{},
		kernelF: map[string]string{},
		added:   map[string]string{},
		pipes:   map[string]*pipeline{},
		free:    map[int][]freeBuffer{},
	}
	d.idle = sync.NewCond(&d.mu)
	err := d.thread.do(func() error {
		d.dev = createSystemDefaultDevice()
		if d.dev == 0 {
			all := copyAllDevices()
			if all != 0 && objc.Send[uint](all, sel.count) > 0 {
				d.dev = all.Send(sel.object, uint(0)).Send(sel.retain)
			}
			release(all)
		}
		if d.dev == 0 {
			return errors.New("mtl: no Metal device")
		}
		d.readFacts()
		d.queue = d.dev.Send(sel.newCommandQueue)
		if d.queue == 0 {
			return errors.New("mtl: newCommandQueue failed")
		}
		return d.compile(sources, common)
	})
	if err != nil {
		d.thread.stop()
		return nil, err
	}
	return d, nil
}

func (d *Device) readFacts() {
	f := metal.Facts{
		Name:                 goString(d.dev.Send(sel.name)),
		UnifiedMemory:        objc.Send[bool](d.dev, sel.hasUnifiedMemory),
		WorkingSet:           objc.Send[uint64](d.dev, sel.workingSet),
		MaxThreadgroupMemory: int(objc.Send[uint](d.dev, sel.maxTGMemory)),
		SIMDWidth:            32, // checked against each pipeline's threadExecutionWidth
	}
	for fam := 10; fam >= 7; fam-- {
		if objc.Send[bool](d.dev, sel.supportsFamily, int(gpuFamilyApple7+fam-7)) {
			f.Family = fam
			break
		}
	}
	mt := objc.Send[mtlSize](d.dev, sel.maxThreads)
	f.MaxThreadsPerGroup = int(mt.Width)
	d.facts = f
}

// compileOptions returns new MTLCompileOptions for MSL 3.1 with IEEE math (the
// caller releases them). Metal thread only.
func (d *Device) compileOptions() (objc.ID, error) {
	opts := newObject("MTLCompileOptions")
	if opts == 0 {
		return 0, errors.New("mtl: no MTLCompileOptions")
	}
	opts.Send(sel.setLanguageVersion, uint(languageVersion3_1))
	if v := objc.Send[uint](opts, sel.languageVersion); v != languageVersion3_1 {
		release(opts)
		return 0, fmt.Errorf("mtl: MSL 3.1 not available (the compiler reports %d.%d; macOS 14 or later is needed)", v>>16, v&0xffff)
	}
	// IEEE semantics (NaN and infinity kept, precise math functions), as the
	// simulator and the CPU references have.
	if objc.Send[bool](opts, sel.respondsTo, sel.setMathMode) {
		opts.Send(sel.setMathMode, int(mathModeSafe))
	} else {
		opts.Send(sel.setFastMath, false)
	}
	return opts, nil
}

// compile builds one library per .metal file (common in front), so a file that
// fails disables only its own kernels.
func (d *Device) compile(sources fs.FS, common string) error {
	opts, err := d.compileOptions()
	if err != nil {
		return err
	}
	defer release(opts)
	d.facts.LanguageVersion = "3.1"
	if common != "" {
		src, err := fs.ReadFile(sources, common)
		if err != nil {
			return fmt.Errorf("mtl: %w", err)
		}
		d.prefix = fmt.Sprintf("#line 1 %q\n%s\n", common, src)
	}
	names, err := fs.Glob(sources, "*.metal")
	if err != nil {
		return fmt.Errorf("mtl: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == common {
			continue
		}
		src, err := fs.ReadFile(sources, name)
		if err != nil {
			return fmt.Errorf("mtl: %w", err)
		}
		for _, k := range kernelNames(string(src)) {
			d.kernelF[k] = name
		}
		if _, err := d.compileFile(opts, name, string(src)); err != nil {
			d.errs[name] = err
		}
	}
	if len(d.libs) == 0 {
		var msgs []string
		for _, e := range d.errs {
			msgs = append(msgs, e.Error())
		}
		sort.Strings(msgs)
		return fmt.Errorf("mtl: no kernel compiled: %s", strings.Join(msgs, "; "))
	}
	return nil
}

// compileFile builds the library of one file (d.prefix in front) and makes its
// functions launchable; it returns their names. Metal thread only.
func (d *Device) compileFile(opts objc.ID, name, src string) ([]string, error) {
	text := fmt.Sprintf("%s#line 1 %q\n%s\n", d.prefix, name, src)
	var nserr objc.ID
	lib := objc.Send[objc.ID](d.dev, sel.newLibrary, nsString(text), opts, unsafe.Pointer(&nserr))
	if lib == 0 {
		err := nsError(nserr)
		if err == nil {
			err = errors.New("newLibraryWithSource failed")
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	d.owned = append(d.owned, lib)
	fnames := lib.Send(sel.functionNames)
	n := objc.Send[uint](fnames, sel.count)
	var out []string
	for i := uint(0); i < n; i++ {
		f := goString(fnames.Send(sel.object, i))
		d.libs[f] = lib
		out = append(out, f)
	}
	return out, nil
}

// AddSource compiles src, MSL with the common file's helpers in front, as a
// library of its own named name and makes its kernels launchable on d: the way
// kernels defined outside package shaders (metal.AddSource,
// autodiff.CustomKernel) reach the GPU. Adding the same source under the same
// name again does nothing; a kernel name already launchable on d, or a source
// that does not compile, is an error.
func (d *Device) AddSource(name, src string) error {
	return d.thread.do(func() error {
		if prev, ok := d.added[name]; ok {
			if prev == src {
				return nil
			}
			return fmt.Errorf("mtl: library %s was added with another source", name)
		}
		for _, k := range kernelNames(src) {
			if d.libs[k] != 0 {
				return fmt.Errorf("mtl: %s: kernel %s is already defined on the device", name, k)
			}
		}
		opts, err := d.compileOptions()
		if err != nil {
			return err
		}
		defer release(opts)
		fns, err := d.compileFile(opts, name+".metal", src)
		if err != nil {
			return fmt.Errorf("mtl: %w", err)
		}
		if len(fns) == 0 {
			return fmt.Errorf("mtl: %s defines no kernel", name)
		}
		d.added[name] = src
		return nil
	})
}

// kernelNames finds `kernel void name` declarations, to name the file of a
// kernel that did not compile.
func kernelNames(src string) []string {
	var out []string
	f := strings.Fields(strings.NewReplacer("(", " ( ", ")", " ) ").Replace(src))
	for i := 0; i+2 < len(f); i++ {
		if f[i] == "kernel" && f[i+1] == "void" {
			out = append(out, f[i+2])
		}
	}
	return out
}

// Kind is metal.DeviceMetal.
func (d *Device) Kind() metal.DeviceKind { return metal.DeviceMetal }

// Name is the GPU's name.
func (d *Device) Name() string { return d.facts.Name }

// Facts describes the GPU.
func (d *Device) Facts() metal.Facts { return d.facts }

// Errors returns, by file, the shaders that did not compile.
func (d *Device) Errors() map[string]error {
	out := map[string]error{}
	for f, e := range d.errs {
		out[f] = e
	}
	return out
}

// Pool counts the device memory in use.
func (d *Device) Pool() *metal.Pool { return d.pool }

func wordsFor(n int) int {
	w := max((n+7)/8, 2)
	if w <= 512 {
		return (w + 31) &^ 31
	}
	hi := bits.Len(uint(w-1)) - 1
	step := 1 << (hi - 2)
	return (w + step - 1) / step * step
}

// NewBuffer returns n bytes of shared-storage memory. Contents are undefined.
func (d *Device) NewBuffer(n int) (*metal.Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("mtl: buffer of %d bytes", n)
	}
	w := wordsFor(n)
	d.mu.Lock()
	var fb freeBuffer
	if l := d.free[w]; len(l) > 0 {
		fb = l[len(l)-1]
		d.free[w] = l[:len(l)-1]
		d.freeBytes -= w * 8
	}
	d.mu.Unlock()
	if fb.buf == 0 {
		err := d.thread.do(func() error {
			buf := objc.Send[objc.ID](d.dev, sel.newBuffer, uint(w*8), uint(resourceStorageModeShared))
			if buf == 0 {
				return fmt.Errorf("mtl: newBufferWithLength(%d) failed", w*8)
			}
			p := objc.Send[unsafe.Pointer](buf, sel.contents)
			if p == nil {
				release(buf)
				return errors.New("mtl: shared buffer without contents")
			}
			fb = freeBuffer{buf: buf, words: unsafe.Slice((*uint64)(p), w)}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	h := &buffer{dev: d, buf: fb.buf}
	return d.pool.Wrap(fb.words, n, h, func() { d.recycle(fb) }), nil
}

func (d *Device) recycle(fb freeBuffer) {
	d.mu.Lock()
	if d.freeBytes+len(fb.words)*8 <= freeKeep {
		d.free[len(fb.words)] = append(d.free[len(fb.words)], fb)
		d.freeBytes += len(fb.words) * 8
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	release(fb.buf) // MTLBuffer may be released from any thread
}

// pipelineFor returns the compute pipeline of a launch, building it at first use.
// Metal thread only.
func (d *Device) pipelineFor(l *metal.Launch) (*pipeline, error) {
	key := l.PipelineKey()
	if p := d.pipes[key]; p != nil {
		return p, nil
	}
	lib := d.libs[l.Kernel]
	if lib == 0 {
		if f, ok := d.kernelF[l.Kernel]; ok && d.errs[f] != nil {
			return nil, fmt.Errorf("kernel %s: %w", l.Kernel, d.errs[f])
		}
		return nil, fmt.Errorf("no kernel %s", l.Kernel)
	}
	var fn objc.ID
	if len(l.Constants) == 0 {
		fn = lib.Send(sel.newFunction, nsString(l.Kernel))
		if fn == 0 {
			return nil, fmt.Errorf("kernel %s: newFunctionWithName failed", l.Kernel)
		}
	} else {
		values := newObject("MTLFunctionConstantValues")
		if values == 0 {
			return nil, errors.New("no MTLFunctionConstantValues")
		}
		defer release(values)
		for _, c := range l.Constants {
			typ, bits, err := metal.ConstantBits(c)
			if err != nil {
				return nil, err
			}
			dt := map[string]uint{"bool": dataTypeBool, "int": dataTypeInt, "uint": dataTypeUInt, "float": dataTypeFloat}[typ]
			v := bits // little-endian: the low bytes hold the bool or 32-bit value
			values.Send(sel.setConstantValue, unsafe.Pointer(&v), dt, uint(c.Index))
			runtime.KeepAlive(&v)
		}
		var nserr objc.ID
		fn = objc.Send[objc.ID](lib, sel.newFunctionConstants, nsString(l.Kernel), values, unsafe.Pointer(&nserr))
		if fn == 0 {
			return nil, fmt.Errorf("kernel %s: constants %v: %w", l.Kernel, l.Constants, orErr(nsError(nserr), "newFunctionWithName:constantValues: failed"))
		}
	}
	defer release(fn)
	var nserr objc.ID
	pso := objc.Send[objc.ID](d.dev, sel.newPipeline, fn, unsafe.Pointer(&nserr))
	if pso == 0 {
		return nil, fmt.Errorf("kernel %s: pipeline: %w", l.Kernel, orErr(nsError(nserr), "newComputePipelineState failed"))
	}
	if w := objc.Send[uint](pso, sel.executionWidth); w != 32 {
		release(pso)
		return nil, fmt.Errorf("kernel %s: SIMD width %d; the kernels assume 32", l.Kernel, w)
	}
	p := &pipeline{pso: pso, maxThreads: int(objc.Send[uint](pso, sel.maxTotalThreads))}
	d.pipes[key] = p
	return p, nil
}

func orErr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}
