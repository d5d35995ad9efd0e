//go:build !unix

package advanced

// cpuSeconds is unknown here.
func cpuSeconds() float64 { return -1 }
