//go:build !unix

package sim

// deviceMem is simulated device memory; without mmap it is Go memory.
type deviceMem struct{ words []uint64 }

func allocDevice(words int) (deviceMem, error) { return deviceMem{words: make([]uint64, words)}, nil }

func (m deviceMem) free() {}
