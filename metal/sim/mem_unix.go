//go:build unix

package sim

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// deviceMem is simulated device memory: mapped outside the Go heap, so a kernel
// that writes out of bounds cannot corrupt Go's objects, and ending at an
// inaccessible page, so running off the end faults at once instead of silently
// reaching the next buffer.
type deviceMem struct {
	words  []uint64
	region []byte
}

func allocDevice(words int) (deviceMem, error) {
	page := os.Getpagesize()
	bytes := words * 8
	n := (bytes + page - 1) / page * page
	region, err := syscall.Mmap(-1, 0, n+page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return deviceMem{}, fmt.Errorf("sim: map %d bytes: %w", n+page, err)
	}
	if err := syscall.Mprotect(region[n:], syscall.PROT_NONE); err != nil {
		syscall.Munmap(region)
		return deviceMem{}, fmt.Errorf("sim: guard page: %w", err)
	}
	data := region[n-bytes : n]
	return deviceMem{words: unsafe.Slice((*uint64)(unsafe.Pointer(&data[0])), words), region: region}, nil
}

func (m deviceMem) free() {
	if m.region != nil { // nil: Go memory (Options.HeapMemory)
		syscall.Munmap(m.region)
	}
}
