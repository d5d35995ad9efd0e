//go:build darwin

package mtl

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/ebitengine/purego/objc"

	"github.com/mlxtrain/mlxtrain/metal"
)

// osThread runs functions on one goroutine locked to its OS thread: Metal
// objects and autorelease pools stay on the thread that made them.
type osThread struct {
	jobs chan func()
	quit chan struct{}
}

func newOSThread() *osThread {
	t := &osThread{jobs: make(chan func()), quit: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		for {
			select {
			case f := <-t.jobs:
				f()
			case <-t.quit:
				return
			}
		}
	}()
	return t
}

var errClosed = errors.New("mtl: device closed")

// do runs f on the thread inside an autorelease pool and returns its error; a
// panic becomes an error, so no Metal failure takes the process down.
func (t *osThread) do(f func() error) (err error) {
	done := make(chan struct{})
	job := func() {
		pool := autoreleasePoolPush()
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("mtl: %v", r)
			}
			autoreleasePoolPop(pool)
			close(done)
		}()
		err = f()
	}
	select {
	case t.jobs <- job:
	case <-t.quit:
		return errClosed
	}
	<-done
	return err
}

func (t *osThread) stop() { close(t.quit) }

// Dispatch encodes the launch into the open command buffer (opening one when
// none is). Pipeline errors come back here.
func (d *Device) Dispatch(l *metal.Launch) error {
	if err := l.Check(d.facts); err != nil {
		return fmt.Errorf("mtl: %w", err)
	}
	if l.Groups[0]*l.Groups[1]*l.Groups[2] == 0 {
		return nil
	}
	for _, a := range l.Args {
		if a.Buffer == nil {
			continue
		}
		if h, ok := a.Buffer.Handle().(*buffer); !ok || h.dev != d {
			return fmt.Errorf("mtl: %s: buffer %d is not this device's (allocate with its NewBuffer)", l.Kernel, a.Index)
		}
	}
	dones, err := beginUses(l)
	if err != nil {
		return err
	}
	err = d.thread.do(func() error {
		p, err := d.pipelineFor(l)
		if err != nil {
			return fmt.Errorf("mtl: %w", err)
		}
		threads := l.Threads[0] * l.Threads[1] * l.Threads[2]
		if threads > p.maxThreads {
			return fmt.Errorf("mtl: %s: %d threads per threadgroup, the pipeline allows %d", l.Kernel, threads, p.maxThreads)
		}
		if d.cb == 0 {
			// Both come autoreleased; the batch outlives this call's pool.
			cb := d.queue.Send(sel.commandBuffer)
			if cb == 0 {
				return fmt.Errorf("mtl: %s: commandBuffer failed", l.Kernel)
			}
			enc := cb.Send(sel.computeEncoder)
			if enc == 0 {
				return fmt.Errorf("mtl: %s: computeCommandEncoder failed", l.Kernel)
			}
			d.cb, d.enc = cb.Send(sel.retain), enc.Send(sel.retain)
		}
		sendSetPipeline(d.enc, sel.setPipeline, p.pso)
		for _, a := range l.Args {
			if a.Buffer == nil {
				sendSetBytes(d.enc, sel.setBytes, unsafe.Pointer(&a.Bytes[0]), uint(len(a.Bytes)), uint(a.Index))
				continue
			}
			h := a.Buffer.Handle().(*buffer)
			sendSetBuffer(d.enc, sel.setBuffer, h.buf, uint(a.Offset), uint(a.Index))
		}
		for i, n := range l.Shared {
			if n > 0 {
				sendSetTGMemory(d.enc, sel.setTGMemory, uint(n), uint(i))
			}
		}
		sendDispatch(d.enc, sel.dispatch,
			mtlSize{Width: uint(l.Groups[0]), Height: uint(l.Groups[1]), Depth: uint(l.Groups[2])},
			mtlSize{Width: uint(l.Threads[0]), Height: uint(l.Threads[1]), Depth: uint(l.Threads[2])})
		d.batchEnd = append(d.batchEnd, dones...)
		d.batchN++
		if d.batchN >= batchMax {
			d.commit()
		}
		return nil
	})
	if err != nil {
		for _, done := range dones {
			done()
		}
	}
	return err
}

// beginUses marks the launch's buffers in use; a released buffer is an error.
func beginUses(l *metal.Launch) (dones []func(), err error) {
	defer func() {
		if r := recover(); r != nil {
			for _, done := range dones {
				done()
			}
			dones, err = nil, fmt.Errorf("mtl: %s: %v", l.Kernel, r)
		}
	}()
	seen := map[*metal.Buffer]bool{}
	for _, a := range l.Args {
		if a.Buffer != nil && !seen[a.Buffer] {
			seen[a.Buffer] = true
			dones = append(dones, a.Buffer.BeginUse())
		}
	}
	return dones, nil
}

// commit ends the open command buffer and commits it; its completion handler
// reports errors and marks its buffers free. Metal thread only.
func (d *Device) commit() {
	if d.cb == 0 {
		return
	}
	cb, dones := d.cb, d.batchEnd
	d.enc.Send(sel.endEncoding)
	release(d.enc)
	d.mu.Lock()
	d.outstanding++
	d.mu.Unlock()
	block := objc.NewBlock(func(_ objc.Block, done objc.ID) { d.completed(cb, dones) })
	cb.Send(sel.addCompleted, block)
	cb.Send(sel.commit)
	block.Release() // the command buffer holds its own copy
	d.cb, d.enc, d.batchN, d.batchEnd = 0, 0, 0, nil
}

// completed runs on a Metal thread when a command buffer finishes.
func (d *Device) completed(cb objc.ID, dones []func()) {
	pool := autoreleasePoolPush()
	var err error
	if objc.Send[uint](cb, sel.status) == commandBufferStatusError {
		err = fmt.Errorf("mtl: command buffer: %w", orErr(nsError(cb.Send(sel.error)), "failed"))
	}
	release(cb)
	autoreleasePoolPop(pool)
	for _, done := range dones {
		done()
	}
	d.mu.Lock()
	if err != nil && d.err == nil {
		d.err = err
	}
	d.outstanding--
	if d.outstanding == 0 {
		d.idle.Broadcast()
	}
	d.mu.Unlock()
}

// Flush commits the open command buffer without waiting for it.
func (d *Device) Flush() {
	_ = d.thread.do(func() error {
		d.commit()
		return nil
	})
}

// Synchronize commits and waits for all work, and returns the first error of the
// work since the last Synchronize.
func (d *Device) Synchronize() error {
	d.Flush()
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.outstanding > 0 {
		d.idle.Wait()
	}
	err := d.err
	d.err = nil
	return err
}

// Close waits for the work and releases the device's Metal objects. Buffers
// still held stay valid until released.
func (d *Device) Close() error {
	err := d.Synchronize()
	_ = d.thread.do(func() error {
		for _, p := range d.pipes {
			release(p.pso)
		}
		d.pipes = map[string]*pipeline{}
		for _, lib := range d.owned {
			release(lib)
		}
		d.owned, d.libs = nil, map[string]objc.ID{}
		d.mu.Lock()
		for _, l := range d.free {
			for _, fb := range l {
				release(fb.buf)
			}
		}
		d.free, d.freeBytes = map[int][]freeBuffer{}, 0
		d.mu.Unlock()
		release(d.queue)
		release(d.dev)
		d.queue, d.dev = 0, 0
		return nil
	})
	d.thread.stop()
	return err
}
