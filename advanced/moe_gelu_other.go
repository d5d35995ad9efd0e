//go:build !amd64

package advanced

// geluRow32 sets y = gelu(y+b) and d = gelu′(y+b) (d and b may be nil).
func geluRow32(y, d, b []float32) { geluRowGo32(y, d, b) }
