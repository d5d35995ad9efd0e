//go:build darwin

package mtl

import (
	"errors"
	"fmt"
	"structs"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
	"github.com/ebitengine/purego/objc"
)

// mtlSize is MTLSize, passed by value (on amd64 a struct over 16 bytes goes on
// the stack, on arm64 by a pointer to a copy: purego does both).
type mtlSize struct {
	_      structs.HostLayout
	Width  uint
	Height uint
	Depth  uint
}

// Constants of the Metal API.
const (
	resourceStorageModeShared = 0         // MTLResourceStorageModeShared
	languageVersion3_1        = 3<<16 | 1 // MTLLanguageVersion3_1
	mathModeSafe              = 0         // MTLMathModeSafe
	commandBufferStatusError  = 5         // MTLCommandBufferStatusError
	gpuFamilyApple7           = 1007      // MTLGPUFamilyApple7; Apple8..Apple10 follow
	dataTypeFloat             = 3         // MTLDataTypeFloat
	dataTypeInt               = 29        // MTLDataTypeInt
	dataTypeUInt              = 33        // MTLDataTypeUInt
	dataTypeBool              = 53        // MTLDataTypeBool
)

var (
	loadOnce sync.Once
	loadErr  error

	createSystemDefaultDevice func() objc.ID
	copyAllDevices            func() objc.ID
	autoreleasePoolPush       func() unsafe.Pointer
	autoreleasePoolPop        func(unsafe.Pointer)

	// objc_msgSend with fixed types, for the calls every launch makes.
	sendSetPipeline func(enc objc.ID, sel objc.SEL, pso objc.ID)
	sendSetBuffer   func(enc objc.ID, sel objc.SEL, buf objc.ID, offset, index uint)
	sendSetBytes    func(enc objc.ID, sel objc.SEL, p unsafe.Pointer, n, index uint)
	sendSetTGMemory func(enc objc.ID, sel objc.SEL, n, index uint)
	sendDispatch    func(enc objc.ID, sel objc.SEL, groups, threads mtlSize)

	sel selectors
)

type selectors struct {
	alloc, init, release, retain, respondsTo                              objc.SEL
	utf8String, stringWithUTF8String, localizedDescription, count, object objc.SEL
	name, supportsFamily, hasUnifiedMemory, workingSet, maxTGMemory       objc.SEL
	maxThreads, newCommandQueue, newBuffer, contents                      objc.SEL
	setLanguageVersion, languageVersion, setFastMath, setMathMode         objc.SEL
	newLibrary, functionNames, newFunction, newFunctionConstants          objc.SEL
	setConstantValue, newPipeline, executionWidth, maxTotalThreads        objc.SEL
	commandBuffer, computeEncoder, setPipeline, setBuffer, setBytes       objc.SEL
	setTGMemory, dispatch, endEncoding, addCompleted, commit, status      objc.SEL
	error                                                                 objc.SEL
}

// load opens the frameworks (nothing loads them without cgo) and resolves the
// functions and selectors.
func load() error {
	loadOnce.Do(func() { loadErr = loadFrameworks() })
	return loadErr
}

func loadFrameworks() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("mtl: loading Metal: %v", r)
		}
	}()
	metalLib, err := purego.Dlopen("/System/Library/Frameworks/Metal.framework/Metal", purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return fmt.Errorf("mtl: %w", err)
	}
	if _, err := purego.Dlopen("/System/Library/Frameworks/Foundation.framework/Foundation", purego.RTLD_NOW|purego.RTLD_GLOBAL); err != nil {
		return fmt.Errorf("mtl: %w", err)
	}
	// Command-line programs may get no default device unless CoreGraphics is loaded.
	_, _ = purego.Dlopen("/System/Library/Frameworks/CoreGraphics.framework/CoreGraphics", purego.RTLD_NOW|purego.RTLD_GLOBAL)
	objcLib, err := purego.Dlopen("/usr/lib/libobjc.A.dylib", purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return fmt.Errorf("mtl: %w", err)
	}
	for _, f := range []struct {
		fn   any
		lib  uintptr
		name string
	}{
		{&createSystemDefaultDevice, metalLib, "MTLCreateSystemDefaultDevice"},
		{&copyAllDevices, metalLib, "MTLCopyAllDevices"},
		{&autoreleasePoolPush, objcLib, "objc_autoreleasePoolPush"},
		{&autoreleasePoolPop, objcLib, "objc_autoreleasePoolPop"},
	} {
		sym, err := purego.Dlsym(f.lib, f.name)
		if err != nil {
			return fmt.Errorf("mtl: %s: %w", f.name, err)
		}
		purego.RegisterFunc(f.fn, sym)
	}
	msgSend, err := purego.Dlsym(objcLib, "objc_msgSend")
	if err != nil {
		return fmt.Errorf("mtl: objc_msgSend: %w", err)
	}
	purego.RegisterFunc(&sendSetPipeline, msgSend)
	purego.RegisterFunc(&sendSetBuffer, msgSend)
	purego.RegisterFunc(&sendSetBytes, msgSend)
	purego.RegisterFunc(&sendSetTGMemory, msgSend)
	purego.RegisterFunc(&sendDispatch, msgSend)

	r := objc.RegisterName
	sel = selectors{
		alloc: r("alloc"), init: r("init"), release: r("release"), retain: r("retain"), respondsTo: r("respondsToSelector:"),
		utf8String: r("UTF8String"), stringWithUTF8String: r("stringWithUTF8String:"),
		localizedDescription: r("localizedDescription"), count: r("count"), object: r("objectAtIndex:"),
		name: r("name"), supportsFamily: r("supportsFamily:"), hasUnifiedMemory: r("hasUnifiedMemory"),
		workingSet: r("recommendedMaxWorkingSetSize"), maxTGMemory: r("maxThreadgroupMemoryLength"),
		maxThreads: r("maxThreadsPerThreadgroup"), newCommandQueue: r("newCommandQueue"),
		newBuffer: r("newBufferWithLength:options:"), contents: r("contents"),
		setLanguageVersion: r("setLanguageVersion:"), languageVersion: r("languageVersion"),
		setFastMath: r("setFastMathEnabled:"), setMathMode: r("setMathMode:"),
		newLibrary: r("newLibraryWithSource:options:error:"), functionNames: r("functionNames"),
		newFunction: r("newFunctionWithName:"), newFunctionConstants: r("newFunctionWithName:constantValues:error:"),
		setConstantValue: r("setConstantValue:type:atIndex:"), newPipeline: r("newComputePipelineStateWithFunction:error:"),
		executionWidth: r("threadExecutionWidth"), maxTotalThreads: r("maxTotalThreadsPerThreadgroup"),
		commandBuffer: r("commandBuffer"), computeEncoder: r("computeCommandEncoder"),
		setPipeline: r("setComputePipelineState:"), setBuffer: r("setBuffer:offset:atIndex:"),
		setBytes: r("setBytes:length:atIndex:"), setTGMemory: r("setThreadgroupMemoryLength:atIndex:"),
		dispatch: r("dispatchThreadgroups:threadsPerThreadgroup:"), endEncoding: r("endEncoding"),
		addCompleted: r("addCompletedHandler:"), commit: r("commit"), status: r("status"), error: r("error"),
	}
	return nil
}

// newObject is [[Class alloc] init], owned by the caller.
func newObject(class string) objc.ID {
	c := objc.GetClass(class)
	if c == 0 {
		return 0
	}
	return objc.ID(c).Send(sel.alloc).Send(sel.init)
}

// nsString makes an autoreleased NSString.
func nsString(s string) objc.ID {
	return objc.ID(objc.GetClass("NSString")).Send(sel.stringWithUTF8String, s)
}

// goString copies an NSString.
func goString(s objc.ID) string {
	if s == 0 {
		return ""
	}
	p := objc.Send[*byte](s, sel.utf8String)
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}

// nsError turns an NSError into a Go error (nil for none).
func nsError(e objc.ID) error {
	if e == 0 {
		return nil
	}
	msg := goString(e.Send(sel.localizedDescription))
	if msg == "" {
		msg = "unknown Metal error"
	}
	return errors.New(msg)
}

func release(id objc.ID) {
	if id != 0 {
		id.Send(sel.release)
	}
}
