//go:build !linux && !darwin

package recipes

func PeakRSS() int64     { return 0 }
func totalMemory() int64 { return 0 }
