package advanced

// geluAVX2 sets y[i] = gelu(y[i]+b[i]) and d[i] = gelu′(y[i]+b[i]) for i < n, a
// multiple of 8 (moe_amd64.s); b nil adds nothing, d nil keeps no derivative.
//
//go:noescape
func geluAVX2(y, d, b *float32, n int)

// geluRow32 sets y = gelu(y+b) and d = gelu′(y+b) (d and b may be nil): the
// assembly kernel on whole groups of 8 where the CPU has AVX2 and FMA, Go on the
// rest.
func geluRow32(y, d, b []float32) {
	n := 0
	if hasSSMAVX {
		n = len(y) &^ 7
		if n > 0 {
			var dp, bp *float32
			if d != nil {
				dp = &d[:n][0]
			}
			if b != nil {
				bp = &b[:n][0]
			}
			geluAVX2(&y[0], dp, bp, n)
		}
	}
	geluRowGo32(y[n:], tail(d, n), tail(b, n))
}

// tail is s[n:], or nil for a nil s.
func tail(s []float32, n int) []float32 {
	if s == nil {
		return nil
	}
	return s[n:]
}
