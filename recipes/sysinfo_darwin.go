package recipes

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// PeakRSS is the process's peak resident set in bytes.
func PeakRSS() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Maxrss // bytes on macOS
}

// totalMemory is the machine's memory in bytes, or 0 when unknown.
func totalMemory() int64 {
	n, err := unix.SysctlUint64("hw.memsize")
	if err != nil {
		return 0
	}
	return int64(n)
}
